#!/usr/bin/env node
"use strict";
// Classify .npy arrays of digits with a `digits export` model (.onnx, .int8.onnx or .ort) in
// onnxruntime-node, printing the CSV rows `digits classify` prints for the same arrays, with
// the model's digit_score column where it has that output (0..1, higher = more like a digit).
//
//   node classify.js MODEL INPUT.npy... [--top-k K] [--batch-size N]
//
// Exit codes as digits classify: 0 every digit classified, 1 the model cannot be used or
// standard output cannot be written (a closed pipe: `| head -1`), 2 usage, 3 some inputs
// failed (their rows carry the error). Inputs are named .npy files; a folder, a FIFO or a
// device is refused in its row (the Python runner walks folders; this example does not).

const ort = require("onnxruntime-node");
const { ArrayError, openDigits, blocks, ROW } = require("./npy");
const rows = require("./rows");

const USAGE = "usage: node classify.js MODEL INPUT.npy... [--top-k K] [--batch-size N]";

class UsageError extends Error {}

function parseArgs(argv) {
  const options = { topK: 0, batchSize: 1024, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [name, inline] = arg.startsWith("--") ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    if (name === "--top-k" || name === "--batch-size") {
      const text = inline ?? argv[++i];
      const value = Number(text);
      const max = name === "--top-k" ? 10 : 65536;
      if (!Number.isInteger(value) || value < 1 || value > max) {
        throw new UsageError(`${name}: expected an integer 1..${max}, got ${JSON.stringify(text)}`);
      }
      options[name === "--top-k" ? "topK" : "batchSize"] = value;
    } else if (name === "-h" || name === "--help") {
      process.stdout.write(USAGE + "\n");
      process.exit(0);
    } else if (arg.startsWith("-") && arg !== "-") {
      throw new UsageError(`no such option: ${arg}`);
    } else {
      options.positional.push(arg);
    }
  }
  if (options.positional.length < 2) throw new UsageError("needs a MODEL and at least one INPUT.npy");
  return options;
}

async function loadModel(path) {
  let session;
  try {
    session = await ort.InferenceSession.create(path);
  } catch (e) {
    throw new Error(`${path}: not a loadable ONNX model (${String(e.message).split("\n")[0].slice(0, 200)})`);
  }
  if (session.inputNames.join() !== "image" || !session.outputNames.includes("probabilities")) {
    throw new Error(
      `${path}: model takes ${session.inputNames.join(", ")} and gives ${session.outputNames.join(", ")}; ` +
        "needs a `digits export` model (input image uint8 [batch,28,28], output probabilities)",
    );
  }
  return session;
}

class OutputError extends Error {}

// A write to standard output that failed (the reader closed the pipe, a full disk), as
// digits.files.write_error words it; once set, nothing more is written.
let outputFailed = null;

function outputError(e) {
  const reason = { EPIPE: "the reader closed it (broken pipe)", ENOSPC: "no space left on the device" }[e.code] ?? e.message;
  return new OutputError(`standard output: cannot write (${reason})`);
}

let finished = false;

process.stdout.on("error", (e) => {
  outputFailed ??= outputError(e);
  if (finished) {
    // Rows still buffered when the program was done: the reader left before reading them.
    process.stderr.write(`digits-node: error: ${outputFailed.message}\n`);
    process.exitCode = 1;
  }
});

/** Write rows; resolves once they are handed over (or buffered below the high-water mark),
 * rejects with an OutputError when standard output fails, as `digits classify` stops there. */
function write(text) {
  return new Promise((resolve, reject) => {
    if (outputFailed) return reject(outputFailed);
    const done = (e) => (e ? reject((outputFailed ??= outputError(e))) : resolve());
    if (process.stdout.write(text, (e) => e && done(e))) resolve();
    else process.stdout.once("drain", () => done(outputFailed));
  });
}

async function main(argv) {
  const { topK, batchSize, positional } = parseArgs(argv);
  const [modelPath, ...inputs] = positional;
  const session = await loadModel(modelPath);
  const scored = session.outputNames.includes("digit_score");
  const fetched = scored ? ["probabilities", "digit_score"] : ["probabilities"];
  await write(rows.header(topK, scored));
  let failed = 0;
  for (const path of inputs) {
    let array;
    try {
      array = openDigits(path);
      for (const [first, pixels] of blocks(array, batchSize)) {
        const n = pixels.length / ROW;
        const image = new ort.Tensor("uint8", pixels, [n, 28, 28]);
        const out = await session.run({ image }, fetched);
        const scores = scored ? out.digit_score.data : null;
        await write(rows.arrayRows(path, first, out.probabilities.data, n, topK, scores));
      }
    } catch (e) {
      // A file that cannot be read mid-way (EIO ...) fails its own row, as in the Python
      // runner, and the next input is still read; a model or output failure ends the run.
      const reason = e instanceof ArrayError ? e.message : e.syscall === "read" ? `cannot read: ${e.message}` : null;
      if (reason === null) throw e;
      failed += 1;
      await write(rows.failedRow(path, reason, topK, scored));
    }
  }
  return failed ? 3 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    finished = true;
    process.exitCode = outputFailed ? 1 : code;
  },
  (e) => {
    finished = true;
    process.stderr.write(`digits-node: error: ${e.message}\n`);
    if (e instanceof UsageError) process.stderr.write(USAGE + "\n");
    process.exitCode = e instanceof UsageError ? 2 : 1;
  },
);
