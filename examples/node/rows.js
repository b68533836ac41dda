"use strict";
// Result rows in the CSV that `digits classify` writes (batch/writer.py): source, label,
// confidence, [label_1, prob_1 ... label_K, prob_K], error. The confidence with 6 decimals,
// the top-k probabilities as Python's "{:.6g}".

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
    out += `${csvField(`${path}#${first + i}`)},${order[0]},${fixed6(p[order[0]])}${extra},\n`;
  }
  return out;
}

function failedRow(source, error, topK) {
  return `${csvField(source)}${",".repeat(2 + 2 * topK)},${csvField(error)}\n`;
}

module.exports = { csvField, fixed6, g6, header, arrayRows, failedRow };
