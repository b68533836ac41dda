// digits.js: classify handwritten digits in the browser with an exported `digits` model.
//
//   import { load, toMnist } from "./digits.js";
//   const classifier = await load("model.onnx");          // a URL, or the file's ArrayBuffer
//   const pixels = toMnist(ctx.getImageData(0, 0, w, h)); // any image -> Uint8Array(784)
//   const { labels, probabilities, scores } = await classifier.classify(pixels, 1);
//   classifier.isDigit(scores[0]);                          // digit_score at or above the model's threshold
//
// toMnist is batch/decode.py in JavaScript, step for step, so that an image gets here the
// digit that `digits classify` gives it: upright by its EXIF orientation (decodeImage: the
// browser applies the tag), grayscale (OpenCV's weights), transparent pixels over white,
// inverted when the border is light (dark ink on a light page), contrast normalised (the
// page, the border's median, to 0 and the brightest ink to 255), and, unless already 28x28,
// cropped to the ink, fit into 20x20 keeping the aspect ratio (area averaging to shrink,
// bilinear to enlarge, as cv2.resize) and placed so that the centre of mass lands on
// (14, 14). Before the crop, form artefacts are taken out as batch/forms.py takes them out
// (printed lines, comb ticks, specks, cut neighbours; toMnist's `clean`, --no-clean there), with
// the same morphology and connected components in plain JavaScript, giving OpenCV's results,
// and a finer pen's strokes are widened after the crop (forms.thicken).
// onnxruntime-web is imported on first load(), so toMnist needs nothing but this file.

export const MNIST_SIZE = 28;
export const DIGIT_BOX = 20; // MNIST digits are fit into 20x20 and centred in 28x28
export const INK_FRACTION = 0.2; // a pixel counts as ink above this fraction of the brightest
export const NUM_CLASSES = 10;
// Contrast already MNIST's (decode.BLACK_PAGE, decode.FULL_INK): left as it is.
export const BLACK_PAGE = 8;
export const FULL_INK = 247;
// batch/forms.py's constants: what is a printed line, a speck, a piece of the digit.
export const LINE_RUN = 0.8;
export const KEEP_SHARE = 0.1;
export const NEAR = 0.1;
export const EDGE_WEIGHT = 0.5;
export const DUST = 0.001;
export const MNIST_STROKE = 2.25;

const ORT_DIST = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url);

let ortModule = null;

async function onnxruntime() {
  if (!ortModule) {
    ortModule = await import(new URL("ort.wasm.min.mjs", ORT_DIST).href);
    ortModule.env.wasm.wasmPaths = ORT_DIST.href;
    // One thread: no SharedArrayBuffer, so no cross-origin-isolation headers are needed,
    // and a digit's answer never depends on how work was split.
    ortModule.env.wasm.numThreads = 1;
  }
  return ortModule;
}

export class ModelError extends Error {}

/** Load a `digits export` model (.onnx, .int8.onnx or .ort) from a URL or an ArrayBuffer / Uint8Array. */
export async function load(model) {
  const ort = await onnxruntime();
  let bytes = model;
  if (typeof model === "string" || model instanceof URL) {
    const response = await fetch(model);
    if (!response.ok) throw new ModelError(`${model}: ${response.status} ${response.statusText}`);
    bytes = await response.arrayBuffer();
  }
  bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const threshold = Number(modelMetadata(bytes).digit_score_threshold); // read before the session takes the bytes
  let session;
  try {
    session = await ort.InferenceSession.create(bytes);
  } catch (e) {
    throw new ModelError(`not a loadable ONNX model (${String(e.message ?? e).split("\n")[0].slice(0, 200)})`);
  }
  if (session.inputNames.length !== 1 || session.inputNames[0] !== "image" || !session.outputNames.includes("probabilities")) {
    throw new ModelError(
      `model takes ${session.inputNames.join(", ")} and gives ${session.outputNames.join(", ")}; needs a ` +
        "`digits export` model (input image uint8 [batch,28,28], outputs probabilities and label)",
    );
  }
  return new Classifier(ort, session, threshold >= 0 && threshold <= 1 ? threshold : null);
}

export class Classifier {
  constructor(ort, session, threshold = null) {
    this.ort = ort;
    this.session = session;
    this.scored = session.outputNames.includes("digit_score");
    // digit_score under this is not a digit: the threshold `digits train` fitted, from the model's metadata.
    this.threshold = this.scored ? threshold : null;
  }

  /** n white-on-black digits (Uint8Array n*784, row by row) -> {labels: BigInt64Array n, probabilities:
   * Float32Array n*10, scores: Float32Array n (digit_score, 0..1), or null for a model without one}. */
  async classify(pixels, n) {
    if (!(pixels instanceof Uint8Array) || pixels.length !== n * MNIST_SIZE * MNIST_SIZE) {
      throw new RangeError(`classify: expected a Uint8Array of ${n} x 784 pixels`);
    }
    const image = new this.ort.Tensor("uint8", pixels, [n, MNIST_SIZE, MNIST_SIZE]);
    const { probabilities, label, digit_score: score } = await this.session.run({ image });
    const scores = score ? score.data.map((v) => Math.min(1, Math.max(0, v))) : null;
    return { labels: label.data, probabilities: probabilities.data, scores };
  }

  /** Whether a digit_score is a digit's: not under the threshold, both as `digits classify` writes
   * them (6 decimals); true when the model has no threshold (nothing to judge by). */
  isDigit(score) {
    return this.threshold === null || micros(score) >= micros(this.threshold);
  }
}

/** x * 1e6 rounded as numpy's rint (ties to even): a value as its 6 printed decimals. */
function micros(x) {
  const scaled = x * 1e6;
  const micro = Math.round(scaled);
  return micro - scaled === 0.5 && micro % 2 !== 0 ? micro - 1 : micro;
}

/** An ONNX file's metadata_props (ModelProto field 14, entries of key 1 and value 2) as an object;
 * {} for an .ort file (a flatbuffer, "ORTM" at byte 4) or bytes that are no protobuf. onnxruntime-web
 * does not expose them, and only the top level is walked: the graph is skipped whole. */
export function modelMetadata(bytes) {
  const found = {};
  if (String.fromCharCode(...bytes.subarray(4, 8)) === "ORTM") return found;
  const text = new TextDecoder();
  for (const [field, from, to] of protobufFields(bytes, 0, bytes.length) ?? []) {
    if (field !== 14) continue;
    const entry = Object.fromEntries((protobufFields(bytes, from, to) ?? []).map(([f, a, b]) => [f, bytes.subarray(a, b)]));
    if (entry[1]) found[text.decode(entry[1])] = entry[2] ? text.decode(entry[2]) : "";
  }
  return found;
}

/** [field, start, end] of each length-delimited field of the protobuf message bytes[start..end), or null. */
function protobufFields(bytes, start, end) {
  const fields = [];
  let at = start;
  const varint = () => {
    let value = 0;
    for (let shift = 1; at < end; shift *= 128) {
      const byte = bytes[at++];
      value += (byte & 0x7f) * shift;
      if (byte < 0x80) return value;
    }
    return NaN;
  };
  while (at < end) {
    const key = varint();
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const length = varint();
      fields.push([Math.floor(key / 8), at, at + length]);
      at += length;
    } else return null;
    if (Number.isNaN(key)) return null;
  }
  return at === end ? fields : null;
}

/** Decode an image file (a Blob) into a canvas ImageData: upright by its EXIF orientation, as
 * decode.upright turns it; no colour management, no premultiplying. */
export async function decodeImage(blob) {
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

// ---- preprocessing: batch/decode.py ----

/** A canvas ImageData (RGBA, any size) -> grayscale Uint8Array, as decode.to_gray does it. */
export function toGray(imageData) {
  const { data, width, height } = imageData;
  const gray = new Uint8Array(width * height);
  for (let i = 0, p = 0; i < gray.length; i++, p += 4) {
    // cv2.COLOR_BGR2GRAY on 8 bits: weights 0.299, 0.587, 0.114 in 15-bit fixed point
    // (matched against OpenCV on 100,000 random colours).
    const g = (data[p] * 9798 + data[p + 1] * 19235 + data[p + 2] * 3735 + 16384) >> 15;
    const alpha = data[p + 3];
    if (alpha === 255) {
      gray[i] = g;
    } else {
      const a = Math.fround(alpha / 255); // over white, in float32 as decode.py does
      gray[i] = rintHalfEven(Math.fround(Math.fround(g * a) + Math.fround(255 * Math.fround(1 - a))));
    }
  }
  return gray;
}

/** Dark ink on a light page, judged from the border, where a digit rarely is. */
export function needsInverting(gray, width, height) {
  if (height < 3 || width < 3) {
    let total = 0;
    for (let i = 0; i < gray.length; i++) total += gray[i];
    return total / gray.length > 127.5;
  }
  let total = 0;
  for (let x = 0; x < width; x++) total += gray[x] + gray[(height - 1) * width + x];
  for (let y = 1; y < height - 1; y++) total += gray[y * width] + gray[y * width + width - 1];
  return total > 127.5 * (2 * width + 2 * (height - 2));
}

/** The page's grey level of a white-on-black image: its border's lower median, as decode.page_level. */
export function pageLevel(gray, width, height) {
  let border;
  if (height < 3 || width < 3) {
    border = Uint8Array.from(gray);
  } else {
    border = new Uint8Array(2 * width + 2 * (height - 2));
    let n = 0;
    for (let x = 0; x < width; x++) border[n++] = gray[x];
    for (let x = 0; x < width; x++) border[n++] = gray[(height - 1) * width + x];
    for (let y = 1; y < height - 1; y++) border[n++] = gray[y * width];
    for (let y = 1; y < height - 1; y++) border[n++] = gray[y * width + width - 1];
  }
  border.sort();
  return border[(border.length - 1) >> 1];
}

/** White ink on a dark page -> the page at 0 and the brightest ink at 255 (in place), as
 * decode.normalise_contrast: the same integer table, rounded half up. `page`: the page's level
 * when known (default pageLevel's). */
export function normaliseContrast(gray, width, height, page = pageLevel(gray, width, height)) {
  const peak = maximum(gray);
  if (peak <= page || (page <= BLACK_PAGE && peak >= FULL_INK)) return gray;
  return stretch(gray, page, peak);
}

/** decode._stretch applied in place: `page` and below to 0, `peak` to 255, rounded half up. */
function stretch(gray, page, peak) {
  const span = peak - page;
  const table = new Uint8Array(256);
  for (let v = page; v < 256; v++) table[v] = Math.min(255, Math.floor(((v - page) * 510 + span) / (2 * span)));
  for (let i = 0; i < gray.length; i++) gray[i] = table[gray[i]];
  return gray;
}

function maximum(gray) {
  let peak = 0;
  for (let i = 0; i < gray.length; i++) if (gray[i] > peak) peak = gray[i];
  return peak;
}

/**
 * Any image -> one MNIST-style digit: Uint8Array(784), white on black, row by row.
 * `image` is a canvas ImageData, or {data: Uint8Array, width, height} of grayscale pixels
 * (data.length === width * height). `invert` is "auto", "always" or "never". `clean`: take
 * form artefacts out (decode.to_mnist's clean); false for an image that has none, such as the pad.
 */
export function toMnist(image, invert = "auto", clean = true) {
  const { width, height } = image;
  let gray = image.data.length === width * height ? Uint8Array.from(image.data) : toGray(image);
  const form = clean && !(width === MNIST_SIZE && height === MNIST_SIZE);
  const [median, low, high] = form ? pageLevels(gray) : [0, 0, 0];
  const light = form ? median > 127 : needsInverting(gray, width, height);
  const inverting = invert === "always" || (invert === "auto" && light);
  if (inverting) {
    for (let i = 0; i < gray.length; i++) gray[i] = 255 - gray[i];
  }
  normaliseContrast(gray, width, height, ...(form ? [inverting ? 255 - high : low] : []));
  if (width === MNIST_SIZE && height === MNIST_SIZE) return gray;
  // When the lines were the darkest ink, the digit's own now goes to 255.
  if (form) gray = normaliseContrast(removeArtefacts(gray, width, height), width, height, 0);
  const field = new Uint8Array(MNIST_SIZE * MNIST_SIZE);
  const peak = maximum(gray);
  if (peak === 0) return field;

  // Crop to the rows and columns holding ink.
  const threshold = peak * INK_FRACTION;
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (gray[y * width + x] > threshold) {
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  let h = bottom - top + 1;
  let w = right - left + 1;
  let ink = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) ink.set(gray.subarray((top + y) * width + left, (top + y) * width + left + w), y * w);
  gray = null;
  if (form) [ink, w, h] = thicken(ink, w, h, threshold, DIGIT_BOX / Math.max(h, w)); // a finer pen, widened

  const scale = DIGIT_BOX / Math.max(h, w);
  const bw = Math.max(1, roundHalfEven(w * scale));
  const bh = Math.max(1, roundHalfEven(h * scale));
  const box = scale < 1 ? resizeArea(ink, w, h, bw, bh) : resizeLinear(ink, w, h, bw, bh);

  // Place the box so that its centre of mass lands on the field's centre, inside the field.
  let total = 0, sy = 0, sx = 0;
  for (let y = 0; y < bh; y++) {
    let row = 0;
    for (let x = 0; x < bw; x++) {
      row += box[y * bw + x];
      sx += box[y * bw + x] * x;
    }
    total += row;
    sy += row * y;
  }
  const cy = total > 0 ? sy / total : (bh - 1) / 2;
  const cx = total > 0 ? sx / total : (bw - 1) / 2;
  const centre = MNIST_SIZE / 2;
  const y0 = clip(roundHalfEven(centre - cy), 0, MNIST_SIZE - bh);
  const x0 = clip(roundHalfEven(centre - cx), 0, MNIST_SIZE - bw);
  for (let y = 0; y < bh; y++) field.set(box.subarray(y * bw, (y + 1) * bw), (y0 + y) * MNIST_SIZE + x0);
  return field;
}

function clip(v, lo, hi) {
  return Math.min(Math.max(v, lo), hi);
}

/** Python's round(): halves to even. */
function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

function rintHalfEven(v) {
  return roundHalfEven(v);
}

/** cv2.INTER_AREA for shrinking, as OpenCV computes it: float32 weights per source cell
 * (overlaps under 1e-3 of a pixel dropped), float32 sums, rounded half to even. */
function resizeArea(src, sw, sh, dw, dh) {
  const xs = areaTable(sw, dw);
  const ys = areaTable(sh, dh);
  const f = Math.fround;
  const out = new Uint8Array(dw * dh);
  const buf = new Float32Array(dw);
  const sum = new Float32Array(dw);
  for (let dy = 0; dy < dh; dy++) {
    sum.fill(0);
    for (const [sy, beta] of ys[dy]) {
      buf.fill(0);
      for (const [dx, sx, alpha] of xs.flat) buf[dx] = f(buf[dx] + f(src[sy * sw + sx] * alpha));
      for (let dx = 0; dx < dw; dx++) sum[dx] = f(sum[dx] + f(beta * buf[dx]));
    }
    for (let dx = 0; dx < dw; dx++) out[dy * dw + dx] = clip(roundHalfEven(sum[dx]), 0, 255);
  }
  return out;
}

/** OpenCV's computeResizeAreaTab: for each output index, its [source index, float32 weight] pairs. */
function areaTable(size, out) {
  const scale = 1 / (out / size);
  const f = Math.fround;
  const table = [];
  const flat = [];
  for (let d = 0; d < out; d++) {
    const fs1 = d * scale;
    const fs2 = fs1 + scale;
    const cell = Math.min(scale, size - fs1);
    let s2 = Math.min(Math.floor(fs2), size - 1);
    const s1 = Math.min(Math.ceil(fs1), s2);
    const pairs = [];
    if (s1 - fs1 > 1e-3) pairs.push([s1 - 1, f((s1 - fs1) / cell)]);
    for (let s = s1; s < s2; s++) pairs.push([s, f(1 / cell)]);
    if (fs2 - s2 > 1e-3) pairs.push([s2, f(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
    table.push(pairs);
    for (const [s, w] of pairs) flat.push([d, s, w]);
  }
  table.flat = flat;
  return table;
}

/** cv2.INTER_LINEAR on 8 bits: half-pixel centres, edges clamped, 11-bit fixed-point weights.
 * Only digits smaller than 20x20 are enlarged; this differs from OpenCV by one grey
 * level on some pixels (measured on 300 random images of 2..19 px: 1 level at most, on 12%
 * of pixels; OpenCV's SIMD path rounds its vertical pass differently). Shrinking is exact. */
function resizeLinear(src, sw, sh, dw, dh) {
  const xs = linearTaps(sw, dw);
  const ys = linearTaps(sh, dh);
  const out = new Uint8Array(dw * dh);
  for (let dy = 0; dy < dh; dy++) {
    const [y0, y1, b0, b1] = ys[dy];
    for (let dx = 0; dx < dw; dx++) {
      const [x0, x1, a0, a1] = xs[dx];
      const top = src[y0 * sw + x0] * a0 + src[y0 * sw + x1] * a1;
      const bottom = src[y1 * sw + x0] * a0 + src[y1 * sw + x1] * a1;
      out[dy * dw + dx] = clip((top * b0 + bottom * b1 + (1 << 21)) >> 22, 0, 255);
    }
  }
  return out;
}

function linearTaps(size, out) {
  const scale = 1 / (out / size);
  const taps = [];
  for (let d = 0; d < out; d++) {
    let f = Math.fround((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = Math.fround(f - s);
    if (s < 0) {
      s = 0;
      f = 0;
    }
    if (s >= size - 1) {
      s = size - 1;
      f = 0;
    }
    // Each weight rounded on its own (they may not sum to 2048), as OpenCV does.
    taps.push([s, Math.min(s + 1, size - 1), roundHalfEven(Math.fround(1 - f) * 2048), roundHalfEven(f * 2048)]);
  }
  return taps;
}

// ---- form artefacts: batch/forms.py ----

/** forms.page_levels: [median, lower quartile, upper quartile] of the grey levels, each the
 * value of that rank among the sorted pixels. */
export function pageLevels(gray) {
  const counts = new Uint32Array(256);
  for (let i = 0; i < gray.length; i++) counts[gray[i]]++;
  const n = gray.length;
  const ranks = [(n - 1) >> 1, (n - 1) >> 2, n - 1 - ((n - 1) >> 2)];
  return ranks.map((rank) => {
    let v = 0;
    for (let seen = counts[0]; seen <= rank; seen += counts[++v]);
    return v;
  });
}

/** forms.line_run: the odd kernel length of a printed line across `size` pixels. */
function lineRun(size) {
  return Math.ceil(LINE_RUN * size) | 1;
}

/** Pixels in a run of at least `run` ink pixels along rows (step 1) or columns (step width):
 * what OpenCV's opening with a 1 x run (run x 1) kernel keeps, the outside counted as page. */
function longRuns(ink, width, height, run, alongRows) {
  const out = new Uint8Array(ink.length);
  const [lines, length, step, next] = alongRows ? [height, width, 1, width] : [width, height, width, 1];
  for (let l = 0; l < lines; l++) {
    let start = -1;
    for (let i = 0; i <= length; i++) {
      const on = i < length && ink[l * next + i * step];
      if (on && start < 0) start = i;
      if (!on && start >= 0) {
        if (i - start >= run) for (let j = start; j < i; j++) out[l * next + j * step] = 1;
        start = -1;
      }
    }
  }
  return out;
}

/** cv2.connectedComponentsWithStats, 8-connected: labels (Int32Array, 0 = background, pieces
 * numbered in raster order of their first pixel, as OpenCV numbers them) and per piece
 * x, y, w, h, area (Int32Arrays indexed by label - 1). */
function components(mask, width, height) {
  const labels = new Int32Array(mask.length);
  const parent = [0];
  const find = (a) => {
    while (parent[a] !== a) a = parent[a] = parent[parent[a]];
    return a;
  };
  const union = (a, b) => {
    a = find(a);
    b = find(b);
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
    return Math.min(a, b);
  };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      let label = 0;
      const near = [x > 0 ? i - 1 : -1, y > 0 && x > 0 ? i - width - 1 : -1, y > 0 ? i - width : -1,
        y > 0 && x < width - 1 ? i - width + 1 : -1];
      for (const j of near) {
        if (j >= 0 && labels[j]) label = label ? union(label, labels[j]) : find(labels[j]);
      }
      if (!label) {
        label = parent.length;
        parent.push(label);
      }
      labels[i] = label;
    }
  }
  const final = new Int32Array(parent.length);
  let count = 0;
  for (let l = 1; l < parent.length; l++) final[l] = find(l) === l ? ++count : final[find(l)];
  const x0 = new Int32Array(count).fill(width), y0 = new Int32Array(count).fill(height);
  const x1 = new Int32Array(count).fill(-1), y1 = new Int32Array(count).fill(-1), area = new Int32Array(count);
  for (let i = 0; i < labels.length; i++) {
    if (!labels[i]) continue;
    const l = (labels[i] = final[labels[i]]) - 1;
    const x = i % width, y = (i - x) / width;
    if (x < x0[l]) x0[l] = x;
    if (x > x1[l]) x1[l] = x;
    if (y < y0[l]) y0[l] = y;
    if (y > y1[l]) y1[l] = y;
    area[l]++;
  }
  const w = x1.map((v, l) => v - x0[l] + 1), h = y1.map((v, l) => v - y0[l] + 1);
  return { labels, count, x: x0, y: y0, w, h, area };
}

/** forms.remove_artefacts: white ink on a page of 0 -> form lines, comb ticks, specks and cut
 * neighbours set to 0 (a new array, or `gray` itself when there is nothing to take out). */
export function removeArtefacts(gray, width, height) {
  const threshold = INK_FRACTION * 255; // a level: a line darker than the digit changes nothing
  const ink = gray.map((v) => (v > threshold ? 1 : 0));
  const rows = longRuns(ink, width, height, lineRun(width), true);
  const cols = longRuns(ink, width, height, lineRun(height), false);
  const anyRows = rows.includes(1), anyLines = anyRows || cols.includes(1);
  const rest = ink.map((v, i) => v & ~(rows[i] | cols[i]));
  const { labels, count, x, y, w, h, area } = components(rest, width, height);
  if (count === 0) return new Uint8Array(gray.length); // nothing but lines
  const ticks = anyRows ? combTicks(rows, width, height, x, y, w, h) : new Uint8Array(count);
  const part = Array.from(area, (a, l) => a >= DUST * height * width && !ticks[l]);
  if (!part.includes(true)) return new Uint8Array(gray.length); // nothing but lines and dust
  const [top, bottom] = frame(linesOf(rows, width, height, true), height);
  const [left, right] = frame(linesOf(cols, width, height, false), width);
  const edge = Array.from(area, (_, l) =>
    x[l] <= left || y[l] <= top || x[l] + w[l] - 1 >= right || y[l] + h[l] - 1 >= bottom);
  let digit = 0;
  let best = -Infinity;
  for (let l = 0; l < count; l++) {
    const score = part[l] ? (edge[l] ? area[l] * EDGE_WEIGHT : area[l]) : -1;
    if (score > best) [digit, best] = [l, score];
  }
  const kept = new Uint8Array(count + 1); // by label; 0, the page, never
  for (let l = 0; l < count; l++) {
    const gapX = Math.max(0, Math.max(x[l], x[digit]) - Math.min(x[l] + w[l], x[digit] + w[digit]));
    const gapY = Math.max(0, Math.max(y[l], y[digit]) - Math.min(y[l] + h[l], y[digit] + h[digit]));
    kept[l + 1] = l === digit || (part[l] && area[l] >= KEEP_SHARE * area[digit] &&
      Math.max(gapX, gapY) <= NEAR * Math.max(height, width) && !edge[l]) ? 1 : 0;
  }
  if (!anyLines && kept.subarray(1).every((k) => k)) return gray;
  // What goes, with its faint rim: a 3x3 dilation (cv2.dilate: the outside adds nothing), kept ink spared.
  const out = Uint8Array.from(gray);
  for (let yy = 0; yy < height; yy++) {
    for (let xx = 0; xx < width; xx++) {
      const i = yy * width + xx;
      if (kept[labels[i]]) continue;
      let gone = false;
      for (let dy = -1; dy <= 1 && !gone; dy++) {
        for (let dx = -1; dx <= 1 && !gone; dx++) {
          const y2 = yy + dy, x2 = xx + dx;
          if (y2 < 0 || y2 >= height || x2 < 0 || x2 >= width) continue;
          const j = y2 * width + x2;
          gone = ink[j] === 1 && !kept[labels[j]];
        }
      }
      if (gone) out[i] = 0;
    }
  }
  return out;
}

/** forms.stroke_width: 2 x ink area / edge pixels (ink with page among its 8 neighbours, the
 * outside counted as page) of a 0/1 mask with some ink. */
function strokeWidth(mask, width, height) {
  let area = 0, edge = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      area++;
      let inner = y > 0 && y < height - 1 && x > 0 && x < width - 1;
      for (let dy = -1; dy <= 1 && inner; dy++) {
        for (let dx = -1; dx <= 1 && inner; dx++) inner = mask[(y + dy) * width + x + dx] === 1;
      }
      if (!inner) edge++;
    }
  }
  return (2 * area) / edge;
}

/** forms.thicken: [pixels, width, height] of the cropped digit `ink` with its strokes widened by
 * `grow` pixels to about MNIST_STROKE at `scale`; `ink` as it is when they are at most half a
 * pixel short of it, or wider. OpenCV's (grow + 1)-square max filter on the array grown by `grow` (as
 * forms.thicken pads it): output pixel p is the maximum of input p - grow .. p, along rows, then columns. */
function thicken(ink, width, height, threshold, scale) {
  const mask = ink.map((v) => (v > threshold ? 1 : 0));
  const grow = roundHalfEven(MNIST_STROKE / scale - strokeWidth(mask, width, height));
  if (grow < 1) return [ink, width, height];
  const [w, h] = [width + grow, height + grow];
  const across = new Uint8Array(height * w);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < w; x++) {
      let peak = 0;
      for (let i = Math.max(0, x - grow); i <= Math.min(width - 1, x); i++) peak = Math.max(peak, ink[y * width + i]);
      across[y * w + x] = peak;
    }
  }
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let peak = 0;
      for (let i = Math.max(0, y - grow); i <= Math.min(height - 1, y); i++) peak = Math.max(peak, across[i * w + x]);
      out[y * w + x] = peak;
    }
  }
  return [out, w, h];
}

/** The rows (alongRows) or columns of `mask` holding any of its pixels, in order. */
function linesOf(mask, width, height, alongRows) {
  const lines = [];
  for (let l = 0; l < (alongRows ? height : width); l++) {
    for (let i = 0; i < (alongRows ? width : height); i++) {
      if (mask[alongRows ? l * width + i : i * width + l]) {
        lines.push(l);
        break;
      }
    }
  }
  return lines;
}

/** forms._frame: the first and last row (column) inside the lines along the image's two edges. */
function frame(lines, size) {
  const near = NEAR * size;
  const first = lines.filter((l) => l < near);
  const last = lines.filter((l) => l > size - 1 - near);
  return [first.length ? Math.max(...first) + 1 : 0, last.length ? Math.min(...last) - 1 : size - 1];
}

/** forms._ticks: which pieces are about as thin as a horizontal line in `rows` and stand on,
 * or hang from, one of its ends (a comb field's ticks). */
function combTicks(rows, width, height, x, y, w, h) {
  const lines = components(rows, width, height);
  const ticks = new Uint8Array(x.length);
  for (let p = 0; p < x.length; p++) {
    for (let l = 0; l < lines.count && !ticks[p]; l++) {
      const [lx, ly, lw, lh] = [lines.x[l], lines.y[l], lines.w[l], lines.h[l]];
      const touching = y[p] + h[p] >= ly && y[p] <= ly + lh;
      const thin = w[p] <= 2 * lh + 1;
      const atEnd = [lx, lx + lw - 1].some((end) => x[p] <= end + lh && x[p] + w[p] - 1 >= end - lh);
      ticks[p] = touching && thin && atEnd ? 1 : 0;
    }
  }
  return ticks;
}
