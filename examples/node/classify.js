#!/usr/bin/env node
"use strict";
// Classify .npy arrays of digits with a `digits export` model (.onnx, .int8.onnx or .ort) in
// onnxruntime-node, printing the CSV rows `digits classify` prints for the same arrays.
//
//   node classify.js MODEL INPUT.npy... [--top-k K] [--batch-size N]
//
// Exit codes as digits classify: 0 every digit classified, 1 the model cannot be used,
// 2 usage, 3 some inputs failed (their rows carry the error).

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

function write(text) {
  return new Promise((resolve) => (process.stdout.write(text) ? resolve() : process.stdout.once("drain", resolve)));
}

async function main(argv) {
  const { topK, batchSize, positional } = parseArgs(argv);
  const [modelPath, ...inputs] = positional;
  const session = await loadModel(modelPath);
  await write(rows.header(topK));
  let failed = 0;
  for (const path of inputs) {
    let array;
    try {
      array = openDigits(path);
      for (const [first, pixels] of blocks(array, batchSize)) {
        const n = pixels.length / ROW;
        const image = new ort.Tensor("uint8", pixels, [n, 28, 28]);
        const { probabilities } = await session.run({ image }, ["probabilities"]);
        await write(rows.arrayRows(path, first, probabilities.data, n, topK));
      }
    } catch (e) {
      if (!(e instanceof ArrayError)) throw e;
      failed += 1; // found before any row of this array was written, as in the Python runner
      await write(rows.failedRow(path, e.message, topK));
    }
  }
  return failed ? 3 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`digits-node: error: ${e.message}\n`);
    if (e instanceof UsageError) process.stderr.write(USAGE + "\n");
    process.exitCode = e instanceof UsageError ? 2 : 1;
  },
);
