"""What a model file holds: inputs, outputs, opset (ONNX) or ops (LiteRT), size, metadata.

An .onnx file is read with onnx alone; a .tflite file with LiteRT alone."""

import json
import os
from pathlib import Path

from digits.core.errors import ModelError, require_extra
from digits.core.files import require_file
from digits.core.terminal import LINE_LIMIT, printable

ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


def _value_info(value) -> dict:
    tensor = value.type.tensor_type
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim]
    return {"name": value.name, "dtype": ELEM_TYPES.get(tensor.elem_type, str(tensor.elem_type)), "shape": dims}


def describe(path: Path) -> dict:
    if str(path).lower().endswith(".tflite"):
        # Asked before litert_file is imported: it imports flatbuffers.
        require_extra("litert", f"{path}: inspecting a .tflite model", ("ai_edge_litert",))
        from digits.exporter.litert_file import describe_tflite

        return {**describe_tflite(path), "parity_report": parity_report_check(path)}
    import onnx

    require_file(path, "model file", ModelError)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for a non-ONNX file
        raise ModelError(f"{path}: not an ONNX model ({type(e).__name__})") from e
    if not model.graph.node and not model.graph.input:
        raise ModelError(f"{path}: not an ONNX model (no graph)")
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return {
        "path": str(path),
        "bytes": os.path.getsize(path),
        "opset": opsets,
        # tf2onnx 1.17 wrote "1.17.0 None" (its git hash, absent from a wheel); exports now write the version only.
        "producer": f"{model.producer_name} {model.producer_version.removesuffix(' None')}".strip(),
        "inputs": [_value_info(v) for v in model.graph.input],
        "outputs": [_value_info(v) for v in model.graph.output],
        "metadata": {p.key: p.value for p in model.metadata_props},
        "parity_report": parity_report_check(path),
    }


def parity_report_check(path: Path) -> str | None:
    """What the parity report of the export that wrote `path` (MODEL.parity.json, the set's
    manifest, landed last) says of this file: "verified" (it names this file's sha256),
    "another file" (an export cut short between renames left this file beside an older
    report), or None (no report, or one that predates the hashes)."""
    from digits.exporter.metadata import SUFFIXES, sha256_of

    name = Path(path).name
    suffixes = sorted(SUFFIXES.values(), key=len, reverse=True)  # .int8.onnx before .onnx
    stem = next((name[: -len(s)] for s in suffixes if name.endswith(s) and len(name) > len(s)), None)
    try:
        files = json.loads(Path(path).with_name(f"{stem}.parity.json").read_text())["files_sha256"]
        return "verified" if files[name] == sha256_of(path) else "another file"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def format_description(info: dict) -> str:
    """describe()'s answer for a terminal: every string from the file through printable()
    (escapes, long values cut), since a model is untrusted; --json prints it exact."""
    path = printable(info["path"], LINE_LIMIT)
    if "ops" in info:
        lines = [f"{path}: {info['bytes']:,} bytes, LiteRT, ops {printable(', '.join(info['ops']))}"]
    else:
        opsets = printable(", ".join(f"{domain} {version}" for domain, version in info["opset"].items()))
        lines = [f"{path}: {info['bytes']:,} bytes, opset {opsets}, producer {printable(info['producer'] or '?')}"]
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        for v in info[kind]:
            quantization = v.get("quantization")
            scaled = (f"  scale {quantization['scale']:g}, zero point {quantization['zero_point']}"
                      if quantization else "")
            shape = printable(", ".join(map(str, v["shape"])))
            lines.append(f"  {printable(v['name']):<15} {printable(v['dtype']):<8} [{shape}]{scaled}")
    if info.get("parity_report"):
        said = ("names this very file" if info["parity_report"] == "verified"
                else "names another file of this name (an export cut short?): export again")
        lines.append(f"parity report: {said}")
    lines.append("metadata:")
    for key, value in info["metadata"].items():
        lines.append(f"  {printable(key)}: {printable(value)}")
    return "\n".join(lines)
