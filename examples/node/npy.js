"use strict";
// .npy arrays of digits, read block by block: the JavaScript twin of batch/arrays.py.
// Accepted: shape (N, 28, 28) or (N, 784); uint8 0..255, or little-endian float32/float64 0..1,
// scaled to uint8 exactly as the Python runner does (rint(float32(x) * 255), ties to even).
// The header is parsed as data (a Python dict literal of strings, booleans and a tuple),
// never evaluated; object arrays are refused.

const fs = require("fs");

const ROW = 28 * 28;
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const DTYPES = { "|u1": 1, "<f4": 4, "<f8": 8 };

class ArrayError extends Error {}

function parseHeader(text) {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) throw new ArrayError("not a readable .npy file (bad header)");
  const dims = shape[1].split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new ArrayError("not a readable .npy file (bad shape)");
  return { descr: descr[1], fortran: fortran[1] === "True", shape: dims };
}

/** Open an .npy of digits: checks the header and the file's length; reads no rows. */
function openDigits(path) {
  let fd;
  try {
    fd = fs.openSync(path, "r");
  } catch (e) {
    throw new ArrayError(e.code === "ENOENT" ? "no such file or folder" : `cannot read: ${e.message}`);
  }
  try {
    const head = Buffer.alloc(12);
    const got = fs.readSync(fd, head, 0, 12, 0);
    if (got < 10 || !head.subarray(0, 6).equals(MAGIC)) throw new ArrayError("not a readable .npy file (no NUMPY magic)");
    const major = head[6];
    const [lengthBytes, headerLength] = major === 1 ? [2, head.readUInt16LE(8)] : [4, head.readUInt32LE(8)];
    const offset = 8 + lengthBytes + headerLength;
    const header = Buffer.alloc(headerLength);
    if (fs.readSync(fd, header, 0, headerLength, 8 + lengthBytes) !== headerLength) {
      throw new ArrayError("not a readable .npy file (truncated header)");
    }
    const { descr, fortran, shape } = parseHeader(header.toString("latin1"));
    if (descr.includes("O")) throw new ArrayError("holds Python objects; only numeric arrays are read (allow_pickle=False)");
    let dims = shape;
    if (dims.length === 2 && dims[1] === ROW) dims = [dims[0], 28, 28];
    if (dims.length !== 3 || dims[1] !== 28 || dims[2] !== 28) {
      throw new ArrayError(`shape (${shape.join(", ")}${shape.length === 1 ? "," : ""}): expected (N, 28, 28) or (N, 784)`);
    }
    const itemsize = DTYPES[descr];
    if (!itemsize) throw new ArrayError(`dtype ${descr}: expected uint8 (0..255) or little-endian float (0..1)`);
    if (fortran && dims[0] > 1) throw new ArrayError("Fortran-ordered array; save it in C order (np.ascontiguousarray)");
    const length = dims[0];
    const size = fs.fstatSync(fd).size;
    if (size < offset + length * ROW * itemsize) {
      const rows = Math.floor((size - offset) / (ROW * itemsize));
      throw new ArrayError(`truncated: header says ${length.toLocaleString("en-US")} rows, file holds ${rows.toLocaleString("en-US")}`);
    }
    return { fd, path, descr, itemsize, offset, length };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function rintToUint8(value) {
  const scaled = Math.fround(value * 255); // float32 times 255, rounded to float32 as numpy does
  const floor = Math.floor(scaled);
  const diff = scaled - floor;
  return diff > 0.5 || (diff === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/** Yields [firstRow, Uint8Array(n * 784)] blocks of at most `rows` rows. */
function* blocks(array, rows) {
  const { fd, descr, itemsize, offset, length } = array;
  try {
    if (descr !== "|u1") checkFloats(array);
    for (let start = 0; start < length; start += rows) {
      const n = Math.min(rows, length - start);
      const raw = Buffer.alloc(n * ROW * itemsize);
      const got = fs.readSync(fd, raw, 0, raw.length, offset + start * ROW * itemsize);
      if (got !== raw.length) throw new ArrayError(`truncated at row ${start + Math.floor(got / (ROW * itemsize))}`);
      if (descr === "|u1") {
        yield [start, new Uint8Array(raw.buffer, raw.byteOffset, raw.length)];
        continue;
      }
      const values = floats(raw, descr);
      const pixels = new Uint8Array(values.length);
      for (let i = 0; i < values.length; i++) pixels[i] = rintToUint8(Math.fround(values[i]));
      yield [start, pixels];
    }
  } finally {
    fs.closeSync(fd);
  }
}

function floats(raw, descr) {
  const copy = new Uint8Array(raw); // aligned copy
  return descr === "<f4" ? new Float32Array(copy.buffer) : new Float64Array(copy.buffer);
}

function checkFloats(array) {
  const { fd, descr, itemsize, offset, length } = array;
  const rows = 65536;
  for (let start = 0; start < length; start += rows) {
    const n = Math.min(rows, length - start);
    const raw = Buffer.alloc(n * ROW * itemsize);
    fs.readSync(fd, raw, 0, raw.length, offset + start * ROW * itemsize);
    const values = floats(raw, descr);
    let low = Infinity;
    let high = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) throw new ArrayError(`NaN or infinite value in row ${start + Math.floor(i / ROW)}`);
      if (v < low) low = v;
      if (v > high) high = v;
    }
    if (low < 0 || high > 1) throw new ArrayError(`float values must lie in 0..1, found ${low}..${high} (rows from ${start})`);
  }
}

module.exports = { ArrayError, openDigits, blocks, ROW };
