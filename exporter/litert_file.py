"""Finishing a converted .tflite file: tensors (and the serving signature) named `image`,
`probabilities` and `digit_score` as in the ONNX model; metadata as Android's tooling reads it (a
`TFLITE_METADATA` ModelMetadata flatbuffer, metadata_schema.fbs, with `labels.txt` in a zip archive
appended to the file) and a `digits_export` entry holding the ONNX model's metadata_props as JSON;
buffers 16-byte aligned for TFLite Micro. Written with flatbuffers' Builder, not tflite-support:
docs/decisions.md, "The file".
"""

import io
import json
import tempfile
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np

from digits.batch.litert_model import PROVENANCE, LiteRtClassifier, provenance
from digits.core.contract import DIGIT_SCORE, INPUT_NAME, PROBABILITIES

METADATA_NAME = "TFLITE_METADATA"
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
        METADATA_NAME: model_metadata(description, metadata["input_contract"], len(labels)),
        PROVENANCE: json.dumps(metadata, sort_keys=True).encode(),
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
        source, target = Path(tmp, "in.tflite"), Path(tmp, "out.tflite")
        source.write_bytes(content)
        tflite_flatbuffer_align_wrapper.align_tflite_model(str(source), str(target))
        return target.read_bytes()


def _with_label_file(content: bytes, labels: str) -> bytes:
    # A zip archive after the flatbuffer: runtimes read the flatbuffer from the start
    # and ignore what follows; zip readers find the archive from the end.
    stream = io.BytesIO(content)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABEL_FILE, labels)
    return stream.getvalue()


def model_metadata(description: str, contract: str, classes: int) -> bytes:
    """A ModelMetadata flatbuffer: one subgraph, the image input, the probabilities output with
    labels.txt, and the digit_score output, in the graph's order."""
    b = flatbuffers.Builder(1024)  # a flatbuffer is built leaves first: each table after its parts

    def table(*fields) -> int:
        """fields: (slot, offset), or (slot, value, prepend) for a scalar; every offset already built."""
        b.StartObject(max((field[0] for field in fields), default=-1) + 1)
        for slot, value, *prepend in fields:
            (prepend[0] if prepend else b.PrependUOffsetTRelativeSlot)(slot, value, 0)
        return b.EndObject()

    def vector(values: list, prepend=b.PrependUOffsetTRelative) -> int:
        b.StartVector(4, len(values), 4)
        for value in reversed(values):
            prepend(value)
        return b.EndVector()

    def tensor(name: str, text: str, content: int, high: float, files: list[int]) -> int:
        """A TensorMetadata: name 0, description 1, content 3, stats 5 (0..high), associated files 6."""
        name_at, text_at = b.CreateString(name), b.CreateString(text)
        stats = table((0, vector([high], b.PrependFloat32)), (1, vector([0.0], b.PrependFloat32)))  # max, min
        return table((0, name_at), (1, text_at), (3, content), (5, stats), *([(6, vector(files))] if files else []))

    def feature() -> int:  # Content: FeatureProperties, which has no fields
        return table((0, _FEATURE_PROPERTIES, b.PrependUint8Slot), (1, table()))

    # AssociatedFile: name, description, type
    label_name, label_text = b.CreateString(LABEL_FILE), b.CreateString(f"The {classes} class labels, one per line")
    label_file = table((0, label_name), (1, label_text), (2, _TENSOR_AXIS_LABELS, b.PrependInt8Slot))
    # The input: a grayscale image (ImageProperties: color_space), raw bytes (no normalization: it is inside).
    grayscale = table((0, _GRAYSCALE, b.PrependInt8Slot))
    image = tensor(INPUT_NAME, contract, table((0, _IMAGE_PROPERTIES, b.PrependUint8Slot), (1, grayscale)), 255.0, [])
    probabilities = tensor(PROBABILITIES, f"Probability of each of the {classes} classes (softmax); the label is "
                           "the argmax", feature(), 1.0, [label_file])
    score = tensor(DIGIT_SCORE, SCORE_DESCRIPTION, feature(), 1.0, [])
    subgraph = table((2, vector([image])), (3, vector([probabilities, score])))  # SubGraphMetadata
    subgraphs = vector([subgraph])
    name, text, parser = b.CreateString("digits"), b.CreateString(description), b.CreateString(MIN_PARSER_VERSION)
    # ModelMetadata: name 0, description 1, subgraph_metadata 3, min_parser_version 7
    b.Finish(table((0, name), (1, text), (3, subgraphs), (7, parser)), file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def op_names(content: bytes) -> list[str]:
    """The builtin ops the model uses, in first-use order (e.g. ['QUANTIZE', 'FULLY_CONNECTED', 'SOFTMAX'])."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    graph = model.Subgraphs(0)

    def name(code) -> str:
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            return f"custom op {code.CustomCode().decode()}"
        return names.get(builtin, str(builtin))

    return list(dict.fromkeys(name(codes[graph.Operators(i).OpcodeIndex()]) for i in range(graph.OperatorsLength())))


def describe_tflite(path: Path) -> dict:
    """What `digits inspect` shows for a .tflite file: size, ops, input and output tensors
    (a dynamic batch as "batch"), and the metadata digits export wrote (LiteRT only)."""
    classifier = LiteRtClassifier(path)  # the same load errors as classify

    def tensor(details: dict) -> dict:
        shape = ["batch" if d < 0 else int(d) for d in details["shape_signature"]]
        info = {"name": details["name"], "dtype": np.dtype(details["dtype"]).name, "shape": shape}
        scale, zero_point = details["quantization"]
        if scale:
            info["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        return info

    metadata = provenance(classifier.content)
    try:
        with zipfile.ZipFile(io.BytesIO(classifier.content)) as archive:
            metadata["labels.txt"] = " ".join(archive.read(LABEL_FILE).decode().split())
    except (KeyError, zipfile.BadZipFile):  # a .tflite file from elsewhere
        pass
    return {
        "path": str(path),
        "bytes": len(classifier.content),
        "ops": op_names(classifier.content),
        "inputs": [tensor(classifier.input)],
        "outputs": [tensor(classifier.output)] + ([tensor(classifier.score)] if classifier.score else []),
        "metadata": metadata,
    }
