// digits.js: classify handwritten digits in the browser with an exported `digits` model.
//
//   import { load, toMnist } from "./digits.js";
//   const classifier = await load("model.onnx");          // a URL, or the file's ArrayBuffer
//   const pixels = toMnist(ctx.getImageData(0, 0, w, h)); // any image -> Uint8Array(784)
//   const { labels, probabilities } = await classifier.classify(pixels, 1);
//
// toMnist is batch/decode.py in JavaScript, step for step, so that an image gets here the
// digit that `digits classify` gives it: upright by its EXIF orientation (decodeImage: the
// browser applies the tag), grayscale (OpenCV's weights), transparent pixels over white,
// inverted when the border is light (dark ink on a light page), contrast normalised (the
// page, the border's median, to 0 and the brightest ink to 255), and, unless already 28x28,
// cropped to the ink, fit into 20x20 keeping the aspect ratio (area averaging to shrink,
// bilinear to enlarge, as cv2.resize) and placed so that the centre of mass lands on
// (14, 14). onnxruntime-web is imported on first load(), so toMnist needs nothing but this file.

export const MNIST_SIZE = 28;
export const DIGIT_BOX = 20; // MNIST digits are fit into 20x20 and centred in 28x28
export const INK_FRACTION = 0.2; // a pixel counts as ink above this fraction of the brightest
export const NUM_CLASSES = 10;
// Contrast already MNIST's (decode.BLACK_PAGE, decode.FULL_INK): left as it is.
export const BLACK_PAGE = 8;
export const FULL_INK = 247;

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
  let session;
  try {
    session = await ort.InferenceSession.create(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  } catch (e) {
    throw new ModelError(`not a loadable ONNX model (${String(e.message ?? e).split("\n")[0].slice(0, 200)})`);
  }
  if (session.inputNames.length !== 1 || session.inputNames[0] !== "image" || !session.outputNames.includes("probabilities")) {
    throw new ModelError(
      `model takes ${session.inputNames.join(", ")} and gives ${session.outputNames.join(", ")}; needs a ` +
        "`digits export` model (input image uint8 [batch,28,28], outputs probabilities and label)",
    );
  }
  return new Classifier(ort, session);
}

export class Classifier {
  constructor(ort, session) {
    this.ort = ort;
    this.session = session;
  }

  /** n white-on-black digits (Uint8Array n*784, row by row) -> {labels: BigInt64Array n, probabilities: Float32Array n*10}. */
  async classify(pixels, n) {
    if (!(pixels instanceof Uint8Array) || pixels.length !== n * MNIST_SIZE * MNIST_SIZE) {
      throw new RangeError(`classify: expected a Uint8Array of ${n} x 784 pixels`);
    }
    const image = new this.ort.Tensor("uint8", pixels, [n, MNIST_SIZE, MNIST_SIZE]);
    const { probabilities, label } = await this.session.run({ image });
    return { labels: label.data, probabilities: probabilities.data };
  }
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
 * decode.normalise_contrast: the same integer table, rounded half up. */
export function normaliseContrast(gray, width, height) {
  const page = pageLevel(gray, width, height);
  let peak = 0;
  for (let i = 0; i < gray.length; i++) if (gray[i] > peak) peak = gray[i];
  if (peak <= page || (page <= BLACK_PAGE && peak >= FULL_INK)) return gray;
  const span = peak - page;
  const table = new Uint8Array(256);
  for (let v = page; v < 256; v++) table[v] = Math.min(255, Math.floor(((v - page) * 510 + span) / (2 * span)));
  for (let i = 0; i < gray.length; i++) gray[i] = table[gray[i]];
  return gray;
}

/**
 * Any image -> one MNIST-style digit: Uint8Array(784), white on black, row by row.
 * `image` is a canvas ImageData, or {data: Uint8Array, width, height} of grayscale pixels
 * (data.length === width * height). `invert` is "auto", "always" or "never".
 */
export function toMnist(image, invert = "auto") {
  const { width, height } = image;
  let gray = image.data.length === width * height ? Uint8Array.from(image.data) : toGray(image);
  if (invert === "always" || (invert === "auto" && needsInverting(gray, width, height))) {
    for (let i = 0; i < gray.length; i++) gray[i] = 255 - gray[i];
  }
  normaliseContrast(gray, width, height);
  if (width === MNIST_SIZE && height === MNIST_SIZE) return gray;
  const field = new Uint8Array(MNIST_SIZE * MNIST_SIZE);
  let peak = 0;
  for (let i = 0; i < gray.length; i++) if (gray[i] > peak) peak = gray[i];
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
  const h = bottom - top + 1;
  const w = right - left + 1;
  const ink = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) ink.set(gray.subarray((top + y) * width + left, (top + y) * width + left + w), y * w);
  gray = null;

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
