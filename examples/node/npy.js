"use strict";
// .npy arrays of digits, read block by block: the JavaScript twin of batch/arrays.py, which
// reads them through numpy. An array is accepted here exactly when it is accepted there:
// shape (N, 28, 28) or (N, 784); uint8 0..255, or float16/32/64/128 0..1 in either byte order,
// scaled to uint8 exactly as the Python runner does (rint(float32(x) * 255), ties to even).
// The header is parsed as data, the Python literal subset numpy's header reader accepts
// (ast.literal_eval), never evaluated; anything numpy would refuse is refused.

const fs = require("fs");

const ROW = 28 * 28;
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const MAX_HEADER = 10000; // numpy's max_header_size: a longer header is refused, never parsed
const LENGTH_BYTES = { 1: 2, 2: 4, 3: 4 }; // format version -> bytes of the header length

// Every dtype string numpy's np.dtype() turns into uint8 or a float, by what it becomes
// (enumerated from numpy 2.4: type codes, names and byte-order prefixes).
const DTYPES = {};
for (const [kind, names] of [
  ["u1", "<B <u1 =B =u1 >B >u1 B u1 ubyte uint8 |B |u1"],
  ["<f2", "<e <f2 =e =f2 e f2 float16 half |e |f2"],
  [">f2", ">e >f2"],
  ["<f4", "<f <f4 =f =f4 f f4 float32 single |f |f4"],
  [">f4", ">f >f4"],
  ["<f8", "<d <f8 =d =f8 d f8 float double float64 |d |f8"],
  [">f8", ">d >f8"],
  ["<f16", "<f16 <g =f16 =g f16 float128 g longdouble |f16 |g"],
  [">f16", ">f16 >g"],
]) {
  for (const name of names.split(" ")) DTYPES[name] = kind;
}

class ArrayError extends Error {}

// ---- the header: a Python dict literal ----

class Tuple extends Array {}

/** The header text -> its value (objects for dicts, Tuple, BigInt, string, boolean), as
 * ast.literal_eval gives it; null when literal_eval would refuse it. `python2Longs`: numpy
 * retries format 1.0 and 2.0 headers with the "L" of Python 2 longs removed. */
function literal(text, python2Longs) {
  let i = 0;
  const fail = () => {
    throw new SyntaxError("not a literal");
  };
  const space = () => {
    for (;;) {
      while (i < text.length && " \t\f\r\n".includes(text[i])) i++;
      if (text[i] === "#") while (i < text.length && text[i] !== "\n") i++;
      else if (text[i] === "\\" && text[i + 1] === "\n") i += 2;
      else return;
    }
  };
  const word = () => /[A-Za-z0-9_]*/y;
  const readWord = () => {
    const re = word();
    re.lastIndex = i;
    const m = re.exec(text)[0];
    i += m.length;
    return m;
  };
  const string = () => {
    let out = "";
    let kind = null;
    for (;;) {
      const m = /([rRuUbB]{0,2})('''|"""|'|")/y;
      m.lastIndex = i;
      const found = m.exec(text);
      if (!found) break;
      const prefix = found[1].toLowerCase();
      if (!["", "r", "u", "b", "br", "rb"].includes(prefix)) fail();
      const bytes = prefix.includes("b");
      if (kind !== null && kind !== bytes) fail(); // str and bytes cannot be joined
      kind = bytes;
      const raw = prefix.includes("r");
      const quote = found[2];
      i += found[0].length;
      for (;;) {
        if (i >= text.length) fail();
        if (text.startsWith(quote, i)) {
          i += quote.length;
          break;
        }
        const c = text[i];
        if (c === "\n" && quote.length === 1) fail();
        if (bytes && c.charCodeAt(0) > 127) fail();
        if (c !== "\\") {
          out += c;
          i++;
          continue;
        }
        const next = text[i + 1];
        if (next === undefined) fail();
        if (raw) {
          out += c + next;
          i += 2;
          continue;
        }
        i += 2;
        const simple = { "\n": "", "\\": "\\", "'": "'", '"': '"', a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };
        if (next in simple) out += simple[next];
        else if (/[0-7]/.test(next)) {
          const m2 = /[0-7]{1,3}/y;
          m2.lastIndex = i - 1;
          const digits = m2.exec(text)[0];
          i += digits.length - 1;
          out += String.fromCodePoint(parseInt(digits, 8));
        } else if (next === "x" || (!bytes && (next === "u" || next === "U"))) {
          const n = { x: 2, u: 4, U: 8 }[next];
          const hex = text.slice(i, i + n);
          if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) fail();
          const code = parseInt(hex, 16);
          if (code > 0x10ffff) fail();
          out += String.fromCodePoint(code);
          i += n;
        } else if (!bytes && next === "N") fail(); // named characters: not worth a table
        else out += "\\" + next; // an unknown escape stays as written
      }
      space();
    }
    if (kind === null) fail();
    return kind ? { bytes: out } : out;
  };
  const number = () => {
    const m = /(0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|0(?:_?0)*|[1-9](?:_?[0-9])*)(?![0-9A-Za-z_.])/y;
    m.lastIndex = i;
    const found = m.exec(text);
    if (!found) {
      if (python2Longs) {
        const l = /(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0+|[1-9][0-9]*)L(?![0-9A-Za-z_.])/y;
        l.lastIndex = i;
        const long = l.exec(text);
        if (long) {
          i += long[0].length;
          return BigInt(long[1]);
        }
      }
      fail(); // a float, a complex number or a malformed literal: never a valid header here
    }
    i += found[0].length;
    const digits = found[1].replace(/_/g, "");
    return BigInt(/^0+$/.test(digits) ? "0" : digits);
  };
  const value = () => {
    space();
    const c = text[i];
    if (c === "{") {
      i++;
      const dict = new Map();
      space();
      while (text[i] !== "}") {
        const key = value();
        space();
        if (text[i] !== ":") fail();
        i++;
        const v = value();
        if (typeof key !== "string") fail(); // numpy would refuse the keys anyway
        dict.set(key, v);
        space();
        if (text[i] === ",") {
          i++;
          space();
        } else if (text[i] !== "}") fail();
      }
      i++;
      return dict;
    }
    if (c === "(") {
      i++;
      const items = new Tuple();
      let comma = false;
      space();
      while (text[i] !== ")") {
        items.push(value());
        space();
        if (text[i] === ",") {
          comma = true;
          i++;
          space();
        } else if (text[i] !== ")") fail();
      }
      i++;
      if (items.length === 1 && !comma) return items[0]; // (x) is x
      return items;
    }
    if (c === "+" || c === "-") {
      i++;
      space();
      if (!/[0-9]/.test(text[i] ?? "")) fail();
      const n = number();
      return c === "-" ? -n : n;
    }
    if (c !== undefined && /[0-9]/.test(c)) return number();
    if (c === "'" || c === '"') return string();
    const name = readWord();
    if (/^[rRuUbB]{1,2}$/.test(name) && (text[i] === "'" || text[i] === '"')) {
      i -= name.length;
      return string();
    }
    if (name === "True") return true;
    if (name === "False") return false;
    return fail(); // None, lists, sets and the rest are never a valid header
  };
  try {
    // literal_eval strips leading spaces and tabs; a header is one expression.
    const v = value();
    space();
    if (i !== text.length) fail();
    return v;
  } catch (e) {
    if (e instanceof SyntaxError) return null;
    throw e;
  }
}

/** The dtype numpy makes of a header's descr: a key of the DTYPES kinds, or null if it is
 * not uint8 or a float (a structured, subarray, object or integer dtype ...). */
function dtypeOf(descr) {
  if (typeof descr === "string") return DTYPES[descr] ?? null;
  // (base, ()) is base itself; numpy ignores any further items.
  if (descr instanceof Tuple && descr.length >= 2 && descr[1] instanceof Tuple && descr[1].length === 0) {
    return dtypeOf(descr[0]);
  }
  return null;
}

function parseHeader(text) {
  if (text.length > MAX_HEADER) throw new ArrayError(tooLong(text.length));
  // batch/arrays.py reads format 3.0 with numpy's 2.0 reader, which retries without the "L"s too.
  let d = literal(text, false);
  if (d === null) d = literal(text, true);
  if (d === null) throw new ArrayError("not a readable .npy file (Cannot parse header)");
  const keys = d instanceof Map ? [...d.keys()].sort().join() : "";
  if (keys !== "descr,fortran_order,shape") throw new ArrayError("not a readable .npy file (Header does not contain the correct keys)");
  const shape = d.get("shape");
  const fortran = d.get("fortran_order");
  if (!(shape instanceof Tuple) || !shape.every((x) => typeof x === "bigint" || typeof x === "boolean")) {
    throw new ArrayError("not a readable .npy file (shape is not valid)");
  }
  if (typeof fortran !== "boolean") throw new ArrayError("not a readable .npy file (fortran_order is not a valid bool)");
  if (!shape.every((x) => typeof x === "bigint" && x >= 0n)) {
    throw new ArrayError(`shape ${pyTuple(shape)} in the header: dimensions must be whole numbers >= 0`);
  }
  return { descr: d.get("descr"), fortran, shape };
}

function tooLong(length) {
  return `not a readable .npy file (Header info length (${length}) is large and may not be safe to load securely.)`;
}

/** A tuple as Python prints it: (3, 32, 32), (5,), (). */
function pyTuple(items) {
  const text = items.map((x) => (x === true ? "True" : x === false ? "False" : String(x)));
  return `(${text.join(", ")}${items.length === 1 ? "," : ""})`;
}

// ---- opening: what the path names, the header, the file's length ----

// strerror's words for what opening a file can fail with, as Python's messages give them.
const STRERROR = {
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  ELOOP: "Too many levels of symbolic links",
  ENAMETOOLONG: "File name too long",
  ENOTDIR: "Not a directory",
  EIO: "Input/output error",
  EMFILE: "Too many open files",
  ENFILE: "Too many open files in system",
  ENXIO: "No such device or address",
};

// What digits.files calls each kind of path that is not a regular file.
function kindOf(stat) {
  if (stat.isDirectory()) return "a folder";
  if (stat.isFIFO()) return "a FIFO (named pipe)";
  if (stat.isCharacterDevice()) return "a character device";
  if (stat.isBlockDevice()) return "a block device";
  if (stat.isSocket()) return "a socket";
  return "not a regular file";
}

function isSymlink(path) {
  try {
    return fs.lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function readError(e) {
  return new ArrayError(`cannot read: ${STRERROR[e.code] ?? e.message}`);
}

/** The path as bytes when argv named a file whose name is not UTF-8: Node decodes argv with
 * U+FFFD for each bad byte, and the bytes are lost; the one entry of the file's folder whose
 * name decodes to the same text is the file meant (as Python, which keeps the bytes, reads it).
 * Only the last component is looked up. Any other path is returned as it is. */
function byteName(path) {
  if (!path.includes("\uFFFD")) return path;
  const slash = path.lastIndexOf("/");
  const folder = slash < 0 ? "." : path.slice(0, slash + 1) || "/";
  const name = path.slice(slash + 1);
  try {
    const found = fs.readdirSync(folder, { encoding: "buffer" }).filter((entry) => entry.toString("utf8") === name);
    return found.length === 1 ? Buffer.concat([Buffer.from(slash < 0 ? "" : folder), found[0]]) : path;
  } catch {
    return path;
  }
}

/** Open an .npy of digits: checks what the path is, the header and the file's length; reads no rows.
 * The open never blocks (a FIFO), and the check is made on the opened file, as digits.files.open_regular. */
function openDigits(named) {
  const path = byteName(named);
  let fd;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    // What the path names, in digits.files.kind_of's words, as the Python runner's row says it.
    const kind = {
      ELOOP: "a symlink loop",
      ENAMETOOLONG: "a name too long for the system",
      ENOENT: isSymlink(path) ? "a broken symlink" : null,
    }[e.code];
    if (kind) throw new ArrayError(`is ${kind}, not a regular file`);
    if (e.code === "ENOENT") throw new ArrayError("no such file or folder");
    throw new ArrayError(`is unreadable (${STRERROR[e.code] ?? e.message}), not a regular file`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new ArrayError(`is ${kindOf(stat)}, not a regular file`);
    return openHeader(fd, path, stat.size);
  } catch (e) {
    fs.closeSync(fd);
    if (e.code && !(e instanceof ArrayError)) throw readError(e);
    throw e;
  }
}

function readExactly(fd, length, position, what) {
  const buffer = Buffer.alloc(length);
  const got = fs.readSync(fd, buffer, 0, length, position);
  if (got !== length) throw new ArrayError(`not a readable .npy file (EOF: reading ${what}, expected ${length} bytes got ${got})`);
  return buffer;
}

function openHeader(fd, path, size) {
  const magic = readExactly(fd, 8, 0, "magic string");
  if (!magic.subarray(0, 6).equals(MAGIC)) throw new ArrayError("not a readable .npy file (the magic string is not correct)");
  const [major, minor] = [magic[6], magic[7]];
  const lengthBytes = minor === 0 ? LENGTH_BYTES[major] : undefined;
  if (!lengthBytes) throw new ArrayError(`unknown .npy format version ${major}.${minor}`);
  const lengthField = readExactly(fd, lengthBytes, 8, "array header length");
  const headerLength = lengthBytes === 2 ? lengthField.readUInt16LE(0) : lengthField.readUInt32LE(0);
  // numpy reads the header before it checks its length; a length past the file's end is
  // its EOF error, and nothing that long is ever allocated here.
  const available = Math.max(0, size - 8 - lengthBytes);
  if (headerLength > available) {
    throw new ArrayError(`not a readable .npy file (EOF: reading array header, expected ${headerLength} bytes got ${available})`);
  }
  if (headerLength > MAX_HEADER) throw new ArrayError(tooLong(headerLength));
  // Formats 1.0 and 2.0 are latin1; batch/arrays.py reads 3.0 (UTF-8) with the 2.0 reader too.
  const text = readExactly(fd, headerLength, 8 + lengthBytes, "array header").toString("latin1");
  const { descr, fortran, shape } = parseHeader(text);
  const offset = 8 + lengthBytes + headerLength;
  let dims = shape;
  if (dims.length === 2 && dims[1] === BigInt(ROW)) dims = Tuple.from([dims[0], 28n, 28n]);
  if (dims.length !== 3 || dims[1] !== 28n || dims[2] !== 28n) {
    throw new ArrayError(`shape ${pyTuple(dims)}: expected (N, 28, 28) or (N, 784)`);
  }
  const kind = dtypeOf(descr);
  if (!kind) throw new ArrayError(`dtype ${describe(descr)}: expected uint8 (0..255) or float (0..1)`);
  if (fortran && dims.filter((d) => d > 1n).length > 1) {
    // Column-major bytes: even one digit would be read transposed.
    throw new ArrayError("Fortran-ordered array; save it in C order (np.ascontiguousarray)");
  }
  const itemsize = kind === "u1" ? 1 : Number(kind.slice(2));
  const length = dims[0];
  if (BigInt(size) < BigInt(offset) + length * BigInt(ROW * itemsize)) {
    const rows = Math.floor((size - offset) / (ROW * itemsize));
    throw new ArrayError(`truncated: header says ${length.toLocaleString("en-US")} rows, file holds ${rows.toLocaleString("en-US")}`);
  }
  return { fd, path, kind, itemsize, offset, length: Number(length) };
}

// numpy's names for the dtypes people save by mistake; others as the header spells them.
const DTYPE_NAMES = { "<i1": "int8", "|i1": "int8", "<i2": "int16", "<i4": "int32", "<i8": "int64", "<u2": "uint16", "<u4": "uint32", "<u8": "uint64", "|b1": "bool", "<c8": "complex64", "<c16": "complex128" };

function describe(descr) {
  return typeof descr === "string" ? DTYPE_NAMES[descr] ?? descr : "of that description";
}

// ---- the rows ----

function rintToUint8(value) {
  const scaled = Math.fround(value * 255); // float32 times 255, rounded to float32 as numpy does
  const floor = Math.floor(scaled);
  const diff = scaled - floor;
  return diff > 0.5 || (diff === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/** Yields [firstRow, Uint8Array(n * 784)] blocks of at most `rows` rows. */
function* blocks(array, rows) {
  const { fd, kind, itemsize, offset, length } = array;
  try {
    if (kind !== "u1") checkFloats(array);
    for (let start = 0; start < length; start += rows) {
      const n = Math.min(rows, length - start);
      const raw = Buffer.alloc(n * ROW * itemsize);
      const got = fs.readSync(fd, raw, 0, raw.length, offset + start * ROW * itemsize);
      if (got !== raw.length) throw new ArrayError(`truncated at row ${(start + Math.floor(got / (ROW * itemsize))).toLocaleString("en-US")}`);
      if (kind === "u1") {
        yield [start, new Uint8Array(raw.buffer, raw.byteOffset, raw.length)];
        continue;
      }
      const values = floats(raw, kind);
      const pixels = new Uint8Array(values.length);
      for (let i = 0; i < values.length; i++) pixels[i] = rintToUint8(values.float32(i));
      yield [start, pixels];
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The float values of raw bytes: {length, get(i) (float64, for checks), float32(i), above1(i)}. */
function floats(raw, kind) {
  const little = kind[0] === "<";
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const size = Number(kind.slice(2));
  const length = raw.length / size;
  if (size === 16) return extended(view, little, length);
  const get =
    size === 2 ? (i) => half(view.getUint16(2 * i, little))
    : size === 4 ? (i) => view.getFloat32(4 * i, little)
    : (i) => view.getFloat64(8 * i, little);
  return { length, get, float32: (i) => Math.fround(get(i)), above1: (i) => get(i) > 1 };
}

/** IEEE half precision bits -> the exact value. */
function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/** x86 80-bit extended precision, numpy's float128 (16 bytes, 6 of them padding). Compared with
 * 1 exactly, and rounded to float32 straight from its 64-bit mantissa, as numpy casts it. */
function extended(view, little, length) {
  const parts = (i) => {
    const mantissa = little ? view.getBigUint64(16 * i, true) : view.getBigUint64(16 * i + 8, false);
    const top = little ? view.getUint16(16 * i + 8, true) : view.getUint16(16 * i + 6, false);
    return { sign: top & 0x8000 ? -1 : 1, exponent: top & 0x7fff, mantissa };
  };
  const get = (i) => {
    const { sign, exponent, mantissa } = parts(i);
    if (exponent === 0x7fff) return mantissa << 1n ? NaN : sign * Infinity; // the integer bit does not count
    return sign * Number(mantissa) * 2 ** (Math.max(exponent, 1) - 16383 - 63);
  };
  const float32 = (i) => {
    const { sign, exponent, mantissa } = parts(i);
    if (exponent === 0x7fff || mantissa === 0n) return get(i);
    // Round the 64-bit mantissa to float32's 24 bits, ties to even (values in 0..1 that would
    // be float32 subnormals scale to 0 whatever their rounding).
    const drop = 40n;
    let kept = mantissa >> drop;
    const rest = mantissa & ((1n << drop) - 1n);
    const halfway = 1n << (drop - 1n);
    if (rest > halfway || (rest === halfway && (kept & 1n))) kept += 1n;
    return Math.fround(sign * Number(kept) * 2 ** (Math.max(exponent, 1) - 16383 - 23));
  };
  const above1 = (i) => {
    const { sign, exponent, mantissa } = parts(i);
    return sign > 0 && exponent !== 0x7fff && (exponent > 16383 || (exponent === 16383 && mantissa > 1n << 63n));
  };
  return { length, get, float32, above1 };
}

function checkFloats(array) {
  const { fd, kind, itemsize, offset, length } = array;
  const rows = 65536;
  for (let start = 0; start < length; start += rows) {
    const n = Math.min(rows, length - start);
    const raw = Buffer.alloc(n * ROW * itemsize);
    fs.readSync(fd, raw, 0, raw.length, offset + start * ROW * itemsize);
    const values = floats(raw, kind);
    let low = Infinity;
    let high = -Infinity;
    let above = false;
    for (let i = 0; i < values.length; i++) {
      const v = values.get(i);
      if (!Number.isFinite(v)) throw new ArrayError(`NaN or infinite value in row ${(start + Math.floor(i / ROW)).toLocaleString("en-US")}`);
      if (v < low) low = v;
      if (v > high) high = v;
      if (values.above1(i)) above = true;
    }
    if (low < 0 || high > 1 || above) {
      throw new ArrayError(`float values must lie in 0..1, found ${pythonRepr(low)}..${pythonRepr(high)} (rows from ${start.toLocaleString("en-US")})`);
    }
  }
}

// A float as Python's repr writes it (what digits classify prints for a value out of range):
// the shortest digits that read back the same, fixed from 1e-4 up to 1e16, else with an
// exponent of at least two digits; an integral value keeps its ".0".
function pythonRepr(x) {
  if (Object.is(x, -0)) return "-0.0";
  if (x === 0) return "0.0";
  const [mantissa, exponent] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(exponent);
  const sign = x < 0 ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
    const whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
    const fraction = digits.slice(exp + 1);
    return `${sign}${whole}.${fraction || "0"}`;
  }
  const head = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : `${Math.abs(exp)}`;
  return `${sign}${head}e${exp < 0 ? "-" : "+"}${e}`;
}

module.exports = { ArrayError, openDigits, blocks, ROW, literal, parseHeader };
