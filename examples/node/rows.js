"use strict";
// Result rows in the CSV that `digits classify` writes (batch/writer.py): source, label,
// confidence, [label_1, prob_1 ... label_K, prob_K], error. Numbers as Python's "{:.6g}".

const SPECIAL = /[,"\r\n]/;

function csvField(text) {
  return SPECIAL.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Python's format(x, ".6g"): 6 significant digits, trailing zeros dropped, e-notation outside 1e-4..1e6. */
function g6(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const [mantissa, exp] = x.toExponential(5).split("e");
  const exponent = Number(exp);
  if (exponent >= -4 && exponent < 6) return stripZeros(x.toFixed(5 - exponent));
  const sign = exponent < 0 ? "-" : "+";
  return `${stripZeros(mantissa)}e${sign}${String(Math.abs(exponent)).padStart(2, "0")}`;
}

function stripZeros(text) {
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

function header(topK) {
  const columns = ["source", "label", "confidence"];
  for (let k = 1; k <= topK; k++) columns.push(`label_${k}`, `prob_${k}`);
  return columns.concat(["error"]).join(",") + "\n";
}

/** Rows for `n` digits whose probabilities (Float32Array n*10) start at row `first` of `path`. */
function arrayRows(path, first, probabilities, n, topK) {
  let out = "";
  for (let i = 0; i < n; i++) {
    const p = probabilities.subarray(i * 10, i * 10 + 10);
    // Descending, ties to the lower label: numpy's stable argsort of -p, whose first is argmax.
    const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b);
    let extra = "";
    for (let k = 0; k < topK; k++) extra += `,${order[k]},${g6(p[order[k]])}`;
    out += `${csvField(`${path}#${first + i}`)},${order[0]},${g6(p[order[0]])}${extra},\n`;
  }
  return out;
}

function failedRow(source, error, topK) {
  return `${csvField(source)}${",".repeat(2 + 2 * topK)},${csvField(error)}\n`;
}

module.exports = { csvField, g6, header, arrayRows, failedRow };
