// The page: pick a model, draw a digit or drop image files; everything runs here, in the browser.
import { decodeImage, load, NUM_CLASSES, toMnist } from "./digits.js";

const $ = (id) => document.getElementById(id);
const IMAGE_EXTENSIONS = /\.(png|jpe?g|bmp|gif|tiff?|webp|pnm|pgm|ppm|pbm)$/i;
const BLOCK = 64; // images decoded per classify call

let classifier = null;

// ---- model ----

async function useModel(source, name, bytes) {
  const status = $("model-status");
  status.className = "status";
  status.textContent = `loading ${name}…`;
  const start = performance.now();
  try {
    classifier = await load(source);
    const size = bytes ? ` (${(bytes / 1e6).toFixed(2)} MB)` : "";
    status.textContent = `${name}${size} loaded in ${Math.round(performance.now() - start)} ms. Draw a digit or drop images.`;
    status.dataset.model = name;
    redraw();
  } catch (e) {
    classifier = null;
    status.className = "status error";
    status.textContent = `${name}: ${e.message}`;
  }
}

async function useModelFile(file) {
  await useModel(await file.arrayBuffer(), file.name, file.size);
}

$("model-file").addEventListener("change", (event) => {
  if (event.target.files.length) useModelFile(event.target.files[0]);
});
$("demo-model").addEventListener("click", async () => {
  const response = await fetch("model.onnx", { method: "HEAD" });
  if (!response.ok) {
    $("model-status").className = "status error";
    $("model-status").textContent = "No demo model is served here: run `make demo`, then `make web` (or MODEL=path/to/model.onnx make web).";
    return;
  }
  await useModel("model.onnx", "the demo's model.onnx", Number(response.headers.get("content-length")) || 0);
});
dropZone($("model-drop"), async (files) => {
  if (files.length) await useModelFile(files[0].file);
});

// ---- drawing ----

const pad = $("pad");
const ink = pad.getContext("2d", { willReadFrequently: true });
const seen = $("seen").getContext("2d");
let drawing = null;
let pending = false;
let busy = false;

function clearPad() {
  ink.fillStyle = "#000";
  ink.fillRect(0, 0, pad.width, pad.height);
  $("drawn-label").textContent = "–";
  $("drawn-confidence").textContent = "";
  showScore(null);
  seen.clearRect(0, 0, 28, 28);
  renderBars(null);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [((event.clientX - box.left) * pad.width) / box.width, ((event.clientY - box.top) * pad.height) / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  drawing = point(event);
  stroke(drawing, drawing);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const next = point(event);
  stroke(drawing, next);
  drawing = next;
});
for (const type of ["pointerup", "pointercancel"]) pad.addEventListener(type, () => (drawing = null));
$("clear").addEventListener("click", clearPad);

function stroke(from, to) {
  ink.strokeStyle = "#fff";
  ink.lineWidth = 20; // a 280-px pad: 2 MNIST pixels, about the width of MNIST's pen
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(...from);
  ink.lineTo(...to);
  ink.stroke();
  redraw();
}

/** Classify what is on the pad, at most once per frame, never two at a time. */
function redraw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(async () => {
    pending = false;
    if (busy) return redraw();
    busy = true;
    try {
      await classifyPad();
    } finally {
      busy = false;
    }
  });
}

async function classifyPad() {
  // No form artefacts on the pad to take out, and a stroke may run from edge to edge.
  const digit = toMnist(ink.getImageData(0, 0, pad.width, pad.height), "auto", false);
  const preview = seen.createImageData(28, 28);
  digit.forEach((v, i) => preview.data.set([v, v, v, 255], i * 4));
  seen.putImageData(preview, 0, 0);
  if (!digit.some((v) => v > 0)) return;
  if (!classifier) {
    $("drawn-confidence").textContent = "load a model first";
    return;
  }
  const { labels, probabilities, scores } = await classifier.classify(digit, 1);
  const label = Number(labels[0]);
  const score = scores ? scores[0] : null;
  $("drawn-label").textContent = score === null || classifier.isDigit(score) ? String(label) : "?";
  $("drawn-confidence").textContent = `${(probabilities[label] * 100).toFixed(1)}%`;
  showScore(score);
  renderBars(probabilities);
}

/** The drawn image's digit_score, and "not a digit" under the model's threshold (nothing for a model
 * without the score). data-score holds the score unrounded, data-digit the verdict. */
function showScore(score) {
  const shown = $("drawn-score");
  shown.className = "status";
  shown.dataset.score = score === null ? "" : String(score);
  shown.dataset.digit = score === null ? "" : String(classifier.isDigit(score));
  if (score === null) {
    shown.textContent = "";
    return;
  }
  const threshold = classifier.threshold === null ? "" : ` (a digit from ${fixed6(classifier.threshold)})`;
  shown.textContent = `digit score ${fixed6(score)}${threshold}`;
  if (!classifier.isDigit(score)) {
    shown.className = "status error";
    shown.textContent = `not a digit: ${shown.textContent}`;
  }
}

function renderBars(probabilities) {
  const bars = $("bars");
  bars.replaceChildren();
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  for (let d = 0; d < NUM_CLASSES; d++) {
    const p = probabilities ? probabilities[d] : 0;
    const bar = document.createElement("div");
    bar.className = d === best ? "bar best" : "bar";
    bar.dataset.digit = d;
    bar.dataset.probability = p;
    bar.innerHTML = `<span>${probabilities ? (p * 100).toFixed(p < 0.1 ? 1 : 0) : ""}</span>` +
      `<div class="fill" style="height:${(p * 100).toFixed(1)}%"></div><span class="digit">${d}</span>`;
    bars.append(bar);
  }
}

// ---- files ----

let rows = [];

$("image-files").addEventListener("change", (event) => classifyFiles(listed(event.target.files)));
$("image-folder").addEventListener("change", (event) => classifyFiles(listed(event.target.files)));
dropZone($("files-drop"), classifyFiles);
$("download").addEventListener("click", downloadCsv);

function listed(fileList) {
  return [...fileList].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

/** Classify image files in path order, like `digits classify` does a folder; a file that
 * cannot be decoded gets a row with the reason, and the rest go on. */
async function classifyFiles(entries) {
  const status = $("files-status");
  status.className = "status";
  if (!classifier) {
    status.className = "status error";
    status.textContent = "Load a model first.";
    return;
  }
  const images = entries.filter((e) => IMAGE_EXTENSIONS.test(e.path) || e.file.type.startsWith("image/"));
  const skipped = entries.length - images.length;
  images.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  rows = [];
  const body = $("results").tBodies[0];
  body.replaceChildren();
  $("download").disabled = true;
  const start = performance.now();
  for (let i = 0; i < images.length; i += BLOCK) {
    const block = images.slice(i, i + BLOCK);
    const decoded = await Promise.all(block.map(async ({ file }) => {
      try {
        return { digit: toMnist(await decodeImage(file)) };
      } catch (e) {
        return { error: "not a decodable image (corrupt or unsupported)" };
      }
    }));
    const good = decoded.filter((d) => d.digit);
    const pixels = new Uint8Array(good.length * 784);
    good.forEach((d, k) => pixels.set(d.digit, k * 784));
    const result = good.length ? await classifier.classify(pixels, good.length) : null;
    let k = 0;
    block.forEach(({ path }, j) => {
      if (decoded[j].error) {
        rows.push({ source: path, label: "", confidence: "", digit_score: "", not_digit: "", error: decoded[j].error });
        return;
      }
      const probs = result.probabilities.subarray(k * 10, k * 10 + 10);
      const label = Number(result.labels[k]);
      const row = { source: path, label: String(label), confidence: fixed6(probs[label]), error: "" };
      if (result.scores) {
        // A blank image (no ink left) is never a digit, whatever its score, as in `digits classify`.
        const blank = !decoded[j].digit.some((v) => v > 0);
        row.digit_score = fixed6(result.scores[k]);
        row.not_digit = blank || !classifier.isDigit(result.scores[k]) ? "1" : "0";
      }
      k += 1;
      rows.push(row);
    });
    status.textContent = `${rows.length} of ${images.length} images…`;
  }
  const head = $("results").tHead.rows[0];
  head.replaceChildren(...columns().map((name) => Object.assign(document.createElement("th"), { textContent: name })));
  for (const row of rows) {
    const tr = body.insertRow();
    for (const key of columns()) tr.insertCell().textContent = row[key];
  }
  const failed = rows.filter((r) => r.error).length;
  const notDigits = classifier.scored ? `, ${rows.filter((r) => r.not_digit === "1").length} not digits` : "";
  status.textContent = `done: ${rows.length} images, ${rows.length - failed} classified, ${failed} failed${notDigits}, ` +
    `${skipped} skipped (not images) in ${Math.round(performance.now() - start)} ms`;
  status.dataset.done = "true";
  $("download").disabled = rows.length === 0;
}

/** The columns `digits classify` writes: digit_score and not_digit (its --not-digits mark) for a model with a score. */
function columns() {
  return ["source", "label", "confidence", ...(classifier?.scored ? ["digit_score", "not_digit"] : []), "error"];
}

/** The CSV `digits classify` writes, in columns(). */
function toCsv() {
  const field = (text) => (/[,"\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);
  return columns().join(",") + "\n" +
    rows.map((r) => columns().map((key) => field(r[key])).join(",") + "\n").join("");
}

function downloadCsv() {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([toCsv()], { type: "text/csv" }));
  link.download = "digits.csv";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/** A confidence as digits classify prints it: 6 decimals, rint(x * 1e6) with ties to even. */
function fixed6(x) {
  const scaled = x * 1e6; // the same float64 product numpy computes
  let micro = Math.round(scaled);
  if (micro - scaled === 0.5 && micro % 2 !== 0) micro -= 1; // Math.round sends ties up; rint to even
  return `${Math.floor(micro / 1e6)}.${String(micro % 1e6).padStart(6, "0")}`;
}

// ---- drag and drop, folders included ----

function dropZone(element, onFiles) {
  element.addEventListener("dragover", (event) => {
    event.preventDefault();
    element.classList.add("over");
  });
  element.addEventListener("dragleave", () => element.classList.remove("over"));
  element.addEventListener("drop", async (event) => {
    event.preventDefault();
    element.classList.remove("over");
    const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
    const files = entries.length ? (await Promise.all(entries.map((e) => walk(e, "")))).flat() : listed(event.dataTransfer.files);
    await onFiles(files);
  });
}

async function walk(entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: prefix + entry.name }];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  return (await Promise.all(children.map((c) => walk(c, `${prefix}${entry.name}/`)))).flat();
}

clearPad();
window.digitsPage = { get classifier() { return classifier; }, toCsv };
