"""Finishing a converted .tflite file: names, metadata, alignment.

- The input tensor is named `image` and the output `probabilities`, in the tensors
  and in the serving signature, as in the ONNX model (the converter writes
  `serving_default_image:0` and `output_0`).
- Metadata as Android's tooling reads it (TFLite Support's MetadataExtractor, Android
  Studio's ML binding): a `TFLITE_METADATA` entry holding a ModelMetadata flatbuffer
  (tflite-support's metadata_schema.fbs, file identifier M001) with the input
  contract and the output's label file, and `labels.txt` itself in a zip archive
  appended to the file, as tflite-support's MetadataPopulator packs associated
  files. A second entry, `digits_export`, holds the export's provenance as JSON (the
  ONNX model's metadata_props).
- Buffers 16-byte aligned: the flatbuffer is re-packed by Python's object API, which
  aligns vectors to 4 bytes only, so TFLite Micro's own aligner re-writes it.

The metadata schema is small and stable, so its few tables are written here with
flatbuffers' Builder (field slots as in metadata_schema.fbs) rather than pulling in
tflite-support, whose last wheel (0.4.4) pins protobuf < 4 against TensorFlow's 7.
tflite-support's own generated reader parsed what this writes (docs/decisions.md).
"""

import io
import json
import os
import tempfile
import zipfile

import flatbuffers
import numpy as np
from flatbuffers.table import Table

from digits.core.contract import DIGIT_SCORE, INPUT_NAME, PROBABILITIES

METADATA_NAME = "TFLITE_METADATA"
PROVENANCE_NAME = "digits_export"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # only fields of metadata schema 1.0.0 are written
LABEL_FILE = "labels.txt"
SCORE_DESCRIPTION = ("How much the image looks like a digit, 0..1 (max probability before temperature - 0.1) / 0.9; "
                     "not a digit under the provenance's digit_score_threshold")

# metadata_schema.fbs enums
_IMAGE_PROPERTIES, _FEATURE_PROPERTIES = 2, 1  # ContentProperties union
_GRAYSCALE = 2  # ColorSpaceType
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


def finish(content: bytes, metadata: dict[str, str], description: str) -> bytes:
    """`content` with the contract's names, the metadata and aligned buffers."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    graph = model.subgraphs[0]
    (input_index,) = graph.inputs
    # The converter names outputs output_0, output_1 in an order of its own: told apart by rank.
    names = {input_index: INPUT_NAME.encode()}
    names.update({i: (PROBABILITIES if len(graph.tensors[i].shape) == 2 else DIGIT_SCORE).encode()
                  for i in graph.outputs})
    for index, name in names.items():
        graph.tensors[index].name = name
    # probabilities first: output 0, as before the score, so a board's output(0) keeps its meaning.
    graph.outputs = sorted(graph.outputs, key=lambda i: names[i] != PROBABILITIES.encode())
    for signature in model.signatureDefs or []:
        for entry in [*signature.inputs, *signature.outputs]:
            entry.name = names[entry.tensorIndex]

    labels = json.loads(metadata["class_labels"])
    entries = {
        METADATA_NAME: model_metadata(description, metadata["input_contract"], len(labels), len(graph.outputs) > 1),
        PROVENANCE_NAME: json.dumps(metadata, sort_keys=True).encode(),
    }
    model.metadata = [m for m in model.metadata or [] if m.name.decode() not in entries]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = list(data)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name.encode(), len(model.buffers) - 1
        model.metadata.append(entry)

    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    aligned = _align(bytes(builder.Output()))
    return _with_label_file(aligned, "\n".join(labels) + "\n")


def _align(content: bytes) -> bytes:
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        with open(source, "wb") as f:
            f.write(content)
        tflite_flatbuffer_align_wrapper.align_tflite_model(source, target)
        with open(target, "rb") as f:
            return f.read()


def _with_label_file(content: bytes, labels: str) -> bytes:
    # A zip archive after the flatbuffer: runtimes read the flatbuffer from the start
    # and ignore what follows; zip readers find the archive from the end.
    stream = io.BytesIO(content)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABEL_FILE, labels)
    return stream.getvalue()


def model_metadata(description: str, contract: str, classes: int, score: bool = True) -> bytes:
    """A ModelMetadata flatbuffer: one subgraph, the image input, the probabilities output with
    labels.txt, and (`score`) the digit_score output, in the graph's order."""
    # Long by design: a flatbuffer is built leaves first, so the schema's tables are read here in one pass.
    b = flatbuffers.Builder(1024)

    def table(fields: list[tuple[int, str, object]]) -> int:
        """fields: (slot, kind, value) with kind 'offset', 'byte' or 'uint8'; values already built."""
        b.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, kind, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(slot, value, 0)
            else:
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    def floats(values: list[float]) -> int:
        b.StartVector(4, len(values), 4)
        for value in reversed(values):
            b.PrependFloat32(value)
        return b.EndVector()

    def stats(low: float, high: float) -> int:
        maximum, minimum = floats([high]), floats([low])
        return table([(0, "offset", maximum), (1, "offset", minimum)])  # Stats: max, min

    # AssociatedFile: name, description, type
    label_name, label_text = b.CreateString(LABEL_FILE), b.CreateString(f"The {classes} class labels, one per line")
    label_file = table([(0, "offset", label_name), (1, "offset", label_text), (2, "byte", _TENSOR_AXIS_LABELS)])

    # The input: a grayscale image, raw bytes (no normalization: it is inside the model).
    def tensor(name: str, text: str, content: int, high: float, files: list[int]) -> int:
        """A TensorMetadata: name 0, description 1, content 3, stats 5 (0..high), associated files 6."""
        name_at, text_at, stats_at = b.CreateString(name), b.CreateString(text), stats(0.0, high)
        fields = [(0, "offset", name_at), (1, "offset", text_at), (3, "offset", content), (5, "offset", stats_at)]
        return table(fields + ([(6, "offset", vector(files))] if files else []))

    def feature() -> int:  # Content: FeatureProperties, which has no fields
        return table([(0, "uint8", _FEATURE_PROPERTIES), (1, "offset", _empty_table(b))])

    image_properties = table([(0, "byte", _GRAYSCALE)])  # ImageProperties: color_space
    image = tensor(INPUT_NAME, contract, table([(0, "uint8", _IMAGE_PROPERTIES), (1, "offset", image_properties)]),
                   255.0, [])
    described = [tensor(PROBABILITIES, f"Probability of each of the {classes} classes (softmax); the label is "
                        "the argmax", feature(), 1.0, [label_file])]
    if score:
        described.append(tensor(DIGIT_SCORE, SCORE_DESCRIPTION, feature(), 1.0, []))
    inputs, outputs = vector([image]), vector(described)
    subgraph = table([(2, "offset", inputs), (3, "offset", outputs)])  # SubGraphMetadata
    subgraphs = vector([subgraph])
    name, text = b.CreateString("digits"), b.CreateString(description)
    parser = b.CreateString(MIN_PARSER_VERSION)
    # ModelMetadata: name 0, description 1, subgraph_metadata 3, min_parser_version 7
    root = table([(0, "offset", name), (1, "offset", text), (3, "offset", subgraphs), (7, "offset", parser)])
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def _empty_table(b: flatbuffers.Builder) -> int:
    b.StartObject(0)
    return b.EndObject()


def read_metadata(content: bytes) -> dict:
    """What a deployer's tooling reads back: {'provenance': {...}, 'model': {...}, 'labels': [...]}.

    'model' holds ModelMetadata's name, description, the input and output tensor names
    and descriptions, and the output's associated file names; 'labels' is labels.txt
    from the appended archive."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    entries = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        entries[entry.Name().decode()] = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    result = {"provenance": json.loads(entries[PROVENANCE_NAME])} if PROVENANCE_NAME in entries else {}
    if METADATA_NAME in entries:
        result["model"] = _read_model_metadata(entries[METADATA_NAME])
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        result["labels"] = archive.read(LABEL_FILE).decode().split()
    return result


def _read_model_metadata(buf: bytes) -> dict:
    if buf[4:8] != METADATA_IDENTIFIER:
        raise ValueError("not a TFLite ModelMetadata flatbuffer")

    def root(data: bytes) -> Table:
        return Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))

    def string(t: Table, slot: int):
        o = t.Offset(4 + 2 * slot)
        return t.String(o + t.Pos).decode() if o else None

    def tables(t: Table, slot: int) -> list[Table]:
        o = t.Offset(4 + 2 * slot)
        if not o:
            return []
        start = t.Vector(o)
        return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]

    def tensor(t: Table) -> dict:
        return {"name": string(t, 0), "description": string(t, 1),
                "associated_files": [string(f, 0) for f in tables(t, 6)]}

    model = root(buf)
    (subgraph,) = tables(model, 3)
    return {
        "name": string(model, 0),
        "description": string(model, 1),
        "min_parser_version": string(model, 7),
        "inputs": [tensor(t) for t in tables(subgraph, 2)],
        "outputs": [tensor(t) for t in tables(subgraph, 3)],
    }


def op_names(content: bytes) -> list[str]:
    """The builtin ops the model uses, in first-use order (e.g. ['QUANTIZE', 'FULLY_CONNECTED', 'SOFTMAX'])."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    graph = model.Subgraphs(0)
    used = []
    for i in range(graph.OperatorsLength()):
        code = codes[graph.Operators(i).OpcodeIndex()]
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin)) if builtin != schema.BuiltinOperator.CUSTOM else (
            f"custom op {code.CustomCode().decode()}")
        if name not in used:
            used.append(name)
    return used


def describe_tflite(path) -> dict:
    """What `digits inspect` shows for a .tflite file: size, ops, input and output tensors
    (a dynamic batch as "batch"), and the metadata digits export wrote (LiteRT only)."""
    from pathlib import Path

    from digits.batch.litert_model import LiteRtClassifier

    classifier = LiteRtClassifier(Path(path))  # the same load errors as classify

    def tensor(details: dict) -> dict:
        shape = ["batch" if d < 0 else int(d) for d in details["shape_signature"]]
        info = {"name": details["name"], "dtype": np.dtype(details["dtype"]).name, "shape": shape}
        scale, zero_point = details["quantization"]
        if scale:
            info["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        return info

    try:
        metadata = read_metadata(classifier.content)
    except (KeyError, ValueError, zipfile.BadZipFile):  # a .tflite file from elsewhere
        metadata = {}
    return {
        "path": str(path),
        "bytes": len(classifier.content),
        "ops": op_names(classifier.content),
        "inputs": [tensor(classifier.input)],
        "outputs": [tensor(classifier.output)] + ([tensor(classifier.score)] if classifier.score else []),
        "metadata": {**metadata.get("provenance", {}), **({"labels.txt": " ".join(metadata["labels"])}
                                                          if "labels" in metadata else {})},
    }
