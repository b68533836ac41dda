"use strict";
// Result rows in the CSV that `digits classify` writes (batch/writer.py): source, label,
// confidence, [label_1, prob_1 ... label_K, prob_K], [digit_score], error. The confidence and
// digit_score with 6 decimals, the top-k probabilities as Python's "{:.6g}".

const SPECIAL = /[,"\r\n]/;

function csvField(text) {
  return SPECIAL.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Python's format(x, ".6g"): 6 significant digits, trailing zeros dropped, e-notation outside 1e-4..1e6.
 * Rounded as Python rounds: the exact binary value, ties to even (0.5078125 -> 0.507812), where
 * JavaScript's toExponential and toFixed send ties up. */
function g6(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const [digits, exponent] = significant(Math.abs(x), 6);
  const sign = x < 0 ? "-" : "";
  if (exponent >= -4 && exponent < 6) {
    const text = exponent >= 0
      ? `${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`
      : `0.${"0".repeat(-exponent - 1)}${digits}`;
    return sign + stripZeros(text);
  }
  const mantissa = stripZeros(`${digits[0]}.${digits.slice(1)}`);
  return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${String(Math.abs(exponent)).padStart(2, "0")}`;
}

/** x > 0 rounded to p significant digits, ties to even: [p digits, decimal exponent of the first].
 * toExponential(99) gives x's exact decimal expansion to 100 digits, enough to tell a tie: a
 * double that is not exactly a p-digit tie differs from one long before the 100th digit. */
function significant(x, p) {
  const [mantissa, exp] = x.toExponential(99).split("e");
  const all = mantissa.replace(".", "");
  let exponent = Number(exp);
  let head = all.slice(0, p);
  const rest = all.slice(p);
  const tie = rest[0] === "5" && /^0*$/.test(rest.slice(1));
  const up = rest[0] > "5" || (rest[0] === "5" && !tie) || (tie && Number(head[p - 1]) % 2 === 1);
  if (up) {
    head = String(BigInt(head) + 1n);
    if (head.length > p) {
      head = head.slice(0, p);
      exponent += 1;
    }
  }
  return [head, exponent];
}

/** A probability (0..1) with 6 decimals, rounded as batch/writer.py rounds it: rint(x * 1e6), ties to even. */
function fixed6(x) {
  const scaled = x * 1e6; // the same float64 product numpy computes
  let micro = Math.round(scaled);
  if (micro - scaled === 0.5 && micro % 2 !== 0) micro -= 1; // Math.round sends ties up; rint to even
  return `${Math.floor(micro / 1e6)}.${String(micro % 1e6).padStart(6, "0")}`;
}

function stripZeros(text) {
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

function header(topK, scored = false) {
  const columns = ["source", "label", "confidence"];
  for (let k = 1; k <= topK; k++) columns.push(`label_${k}`, `prob_${k}`);
  if (scored) columns.push("digit_score");
  return columns.concat(["error"]).join(",") + "\n";
}

/** Rows for `n` digits whose probabilities (Float32Array n*10) start at row `first` of `path`;
 * `scores` (Float32Array n, the model's digit_score) or null for a model without one. */
function arrayRows(path, first, probabilities, n, topK, scores = null) {
  let out = "";
  for (let i = 0; i < n; i++) {
    const p = probabilities.subarray(i * 10, i * 10 + 10);
    // Descending, ties to the lower label: numpy's stable argsort of -p, whose first is argmax.
    const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b);
    let extra = "";
    for (let k = 0; k < topK; k++) extra += `,${order[k]},${g6(p[order[k]])}`;
    // Clipped to 0..1 as the Python runner clips it: float32 arithmetic strays a hair outside.
    if (scores) extra += `,${fixed6(Math.min(1, Math.max(0, scores[i])))}`;
    out += `${csvField(`${path}#${first + i}`)},${order[0]},${fixed6(p[order[0]])}${extra},\n`;
  }
  return out;
}

function failedRow(source, error, topK, scored = false) {
  return `${csvField(source)}${",".repeat(2 + 2 * topK + (scored ? 1 : 0))},${csvField(error)}\n`;
}

module.exports = { csvField, fixed6, g6, header, arrayRows, failedRow };
