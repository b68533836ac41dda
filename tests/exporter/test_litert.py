"""LiteRT and TFLite Micro exports: the files, their proof, and what a board gets."""

import io
import json
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from digits.exporter.litert import CONTRACTS
from digits.exporter.quantize import INT8_SCORE_ATOL
from tests.conftest import assert_one_line_error, run_digits, run_main

pytestmark = [pytest.mark.slow, pytest.mark.tf]
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

FILES = ("m.tflite", "m.int8.tflite", "m.micro.tflite")
OPS = ["QUANTIZE", "MUL", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX", "REDUCE_MAX", "ADD"]  # the last two: digit_score


@pytest.fixture(scope="module")
def exported(trained_mlp, sample_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert") / "m.onnx"
    result = run_digits("export", trained_mlp, "--out", out, "--data", sample_npz, "--int8", "--tflite", "--micro")
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def real_digits(sample):
    """2,000 real digits, the export's parity digits: the test digits first."""
    return np.concatenate([sample.x_test, sample.x_train])[:2000]


def metadata_entries(content: bytes) -> dict[str, bytes]:
    """The file's metadata entries by name (TFLITE_METADATA, digits_export)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    entries = (model.Metadata(i) for i in range(model.MetadataLength()))
    return {e.Name().decode(): model.Buffers(e.Buffer()).DataAsNumpy().tobytes() for e in entries}


def read_metadata(content: bytes) -> dict:
    """What a deployer's tooling reads back: the digits_export entry (as classify reads it), and
    labels.txt from the zip archive appended to the file."""
    from digits.batch.litert_model import provenance

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {"provenance": provenance(content), "labels": archive.read("labels.txt").decode().split()}


def model_metadata(content: bytes) -> dict:
    """The TFLITE_METADATA entry as Android's tooling reads it: ModelMetadata's name, description,
    min_parser_version, and each input and output tensor's name, description and associated files
    (field slots as in tflite-support's metadata_schema.fbs)."""
    import flatbuffers
    from flatbuffers.table import Table

    from digits.exporter.litert_file import METADATA_NAME

    buf = metadata_entries(content)[METADATA_NAME]
    assert buf[4:8] == b"M001"  # the ModelMetadata file identifier

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

    model = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    (subgraph,) = tables(model, 3)
    return {
        "name": string(model, 0),
        "description": string(model, 1),
        "min_parser_version": string(model, 7),
        "inputs": [tensor(t) for t in tables(subgraph, 2)],
        "outputs": [tensor(t) for t in tables(subgraph, 3)],
    }


def test_every_file_is_written_and_checked(exported):
    out, result = exported
    written = result.stdout.split()[1:]
    for suffix in (".tflite", ".int8.tflite", ".micro.tflite", ".micro.cc", ".micro.h"):
        path = out.with_name("m" + suffix)
        assert path.is_file() and str(path) in written, suffix
    report = json.loads(out.with_name("m.parity.json").read_text())
    tflite, int8, micro = report["tflite"], report["int8_tflite"], report["micro"]
    assert tflite["passed"] and tflite["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    cases = {(c["case"], c["runtime"]) for c in tflite["cases"]}
    assert {("real digits", "litert"), ("all 255", "litert"), ("batch of 1", "litert"),
            ("batch of 4,096", "litert")} <= cases
    assert int8["passed"] and int8["label_agreement"] >= 0.99 and int8["size_ratio"] <= 0.35
    assert int8["batch_label_agreement"] == 1.0 and int8["consistency_samples"] == 2000
    assert micro["passed"] and micro["samples"] >= 1000 and micro["label_agreement"] >= 0.995
    assert micro["ops"] == OPS
    # digit_score: the float file as close to Keras as the probabilities; the int8 files within INT8_SCORE_ATOL.
    assert tflite["outputs"]["digit_score"]["max_abs_diff"] < 1e-5
    assert int8["digit_score_max_abs_diff"] <= INT8_SCORE_ATOL and micro["digit_score_max_abs_diff"] <= INT8_SCORE_ATOL
    for line in ("[✓] tflite:", "[✓] int8_tflite:", "[✓] micro:"):
        assert line in result.stderr


def test_contract_and_metadata(exported, trained_mlp):
    from ai_edge_litert.interpreter import Interpreter

    from digits.exporter.metadata import sha256_of

    out, _ = exported
    for name, kind, batch, output_type in (("m.tflite", "float", -1, np.float32),
                                           ("m.int8.tflite", "int8", -1, np.float32),
                                           ("m.micro.tflite", "micro", 1, np.int8)):
        content = out.with_name(name).read_bytes()
        interpreter = Interpreter(model_content=content)
        (image,), outputs = interpreter.get_input_details(), interpreter.get_output_details()
        probabilities, score = sorted(outputs, key=lambda o: o["name"] != "probabilities")
        assert image["name"] == "image" and image["dtype"] == np.uint8
        assert list(image["shape_signature"]) == [batch, 28, 28]
        assert probabilities["name"] == "probabilities" and probabilities["dtype"] == output_type
        assert list(probabilities["shape_signature"]) == [batch, 10]
        assert score["name"] == "digit_score" and score["dtype"] == output_type
        assert list(score["shape_signature"]) == [batch]
        if name != "m.tflite":
            assert image["quantization"] == (1.0, 0)  # raw bytes in
        signature = interpreter.get_signature_list()["serving_default"]
        assert signature["inputs"] == ["image"] and sorted(signature["outputs"]) == ["digit_score", "probabilities"]
        metadata = read_metadata(content)
        assert metadata["labels"] == [str(d) for d in range(10)]
        contract = {"name": "image", "description": CONTRACTS[kind], "associated_files": []}
        metadata["model"] = model_metadata(content)
        assert metadata["model"]["inputs"][0] == contract
        assert metadata["model"]["outputs"][0]["associated_files"] == ["labels.txt"]
        assert [o["name"] for o in metadata["model"]["outputs"]] == ["probabilities", "digit_score"]
        assert metadata["provenance"]["source_sha256"] == sha256_of(trained_mlp)
        assert metadata["provenance"]["input_contract"] == CONTRACTS[kind]
        # Buffers 16-byte aligned within the file, as TFLite Micro reads them in place.
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAs(content, 0)
        start = np.frombuffer(content, np.uint8).ctypes.data
        for i in range(model.BuffersLength()):
            buffer = model.Buffers(i)
            if buffer.DataLength() >= 16:
                assert (buffer.DataAsNumpy().ctypes.data - start) % 16 == 0, (name, i)
    micro = Interpreter(model_path=str(out.with_name("m.micro.tflite")))
    # int8 builtins only: every tensor is integer (int32 holds the biases), the raw uint8 input included.
    assert {np.dtype(t["dtype"]).name for t in micro.get_tensor_details()} <= {"uint8", "int8", "int32"}


def test_classify_gives_the_onnx_rows_on_2000_real_digits(exported, real_digits, tmp_path):
    out, _ = exported
    np.save(tmp_path / "digits.npy", real_digits)

    def rows(model):
        result = run_digits("classify", model, tmp_path / "digits.npy", "--format", "jsonl", "--top-k", "3")
        assert result.returncode == 0, result.stderr
        assert "XNNPACK" not in result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    onnx_rows = rows(out)
    labels = np.array([r["label"] for r in onnx_rows])
    confidence = np.array([r["confidence"] for r in onnx_rows])
    answers = {}
    for name in FILES:
        got = rows(out.with_name(name))
        assert [r["source"] for r in got] == [r["source"] for r in onnx_rows]
        assert set(got[0]) == set(onnx_rows[0])  # the same columns
        answers[name] = np.array([r["label"] for r in got])
        if name == "m.tflite":
            assert (answers[name] == labels).all()
            np.testing.assert_allclose([r["confidence"] for r in got], confidence, atol=1e-5)
        if "digit_score" in onnx_rows[0]:  # classify's column, where that branch has landed
            tolerance = 1e-5 if name == "m.tflite" else INT8_SCORE_ATOL
            np.testing.assert_allclose([r["digit_score"] for r in got], [r["digit_score"] for r in onnx_rows],
                                       atol=tolerance)
        else:  # full integer: the export's gate against the float model
            assert (answers[name] == labels).mean() >= 0.99, name
    assert (answers["m.micro.tflite"] == answers["m.int8.tflite"]).mean() >= 0.995


def test_tflite_micro_agrees_with_litert(exported, real_digits):
    from digits.batch.litert_model import LiteRtClassifier
    from digits.exporter.micro import measure_arena, run_micro

    out, _ = exported
    content = out.with_name("m.micro.tflite").read_bytes()
    arena = measure_arena(content, real_digits[0])
    micro, micro_score = run_micro(content, real_digits, arena)
    litert, litert_score = LiteRtClassifier(out.with_name("m.micro.tflite")).scored(real_digits)
    int8 = LiteRtClassifier(out.with_name("m.int8.tflite")).predict(real_digits)
    assert (micro.argmax(1) == int8.argmax(1)).mean() >= 0.995
    assert (micro.argmax(1) == litert.argmax(1)).mean() >= 0.995
    # Both interpreters' int8 kernels: at most a few quantization steps (1/256) apart.
    assert np.abs(micro - litert).max() <= 8 / 256
    assert micro_score.shape == (len(real_digits),) and np.abs(micro_score - litert_score).max() <= 8 / 256
    assert f"kDigitsTensorArenaSize = {arena};" in out.with_name("m.micro.h").read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler")
def test_micro_c_source_compiles_and_holds_the_file(exported, tmp_path):
    out, _ = exported
    report = json.loads(out.with_name("m.parity.json").read_text())["micro"]
    assert '#include "m.micro.h"' in out.with_name("m.micro.cc").read_text()
    # A stand-in resolver with TFLite Micro's method names and status type records the calls.
    methods = "\n".join(
        f'  TfLiteStatus {call}() {{ added.push_back("{op}"); return kTfLiteOk; }}'
        for op, call in (("QUANTIZE", "AddQuantize"), ("MUL", "AddMul"), ("RESHAPE", "AddReshape"),
                         ("FULLY_CONNECTED", "AddFullyConnected"), ("SOFTMAX", "AddSoftmax"),
                         ("REDUCE_MAX", "AddReduceMax"), ("ADD", "AddAdd"))
    )
    (tmp_path / "main.cc").write_text(f"""
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>
enum TfLiteStatus {{ kTfLiteOk = 0, kTfLiteError = 1 }};
#include "m.micro.h"
struct Resolver {{
  std::vector<std::string> added;
{methods}
}};
int main(int, char** argv) {{
  Resolver resolver;
  if (DigitsAddOps(resolver) != kTfLiteOk) return 2;
  for (const auto& op : resolver.added) printf("%s ", op.c_str());
  printf("\\n%d %zu %d\\n", int(reinterpret_cast<uintptr_t>(g_digits_model) % 16),
         kDigitsTensorArenaSize, kDigitsOpCount);
  FILE* f = fopen(argv[1], "wb");
  fwrite(g_digits_model, 1, g_digits_model_len, f);
  return fclose(f);
}}
""")
    binary = tmp_path / "board"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(out.parent), str(out.with_name("m.micro.cc")),
                    str(tmp_path / "main.cc"), "-o", str(binary)], check=True, capture_output=True)
    printed = subprocess.run([str(binary), str(tmp_path / "array.bin")], check=True, capture_output=True, text=True)
    ops, numbers = printed.stdout.splitlines()
    assert ops.split() == report["ops"]
    assert numbers.split() == ["0", str(report["arena_bytes"]), str(len(report["ops"]))]
    header = out.with_name("m.micro.h").read_text()  # which output is which, for the C user
    assert "constexpr int kDigitsProbabilitiesOutput = 0;" in header
    assert "constexpr int kDigitsScoreOutput = 1;" in header
    assert (tmp_path / "array.bin").read_bytes() == out.with_name("m.micro.tflite").read_bytes()


def test_an_op_tflite_micro_lacks_is_refused(tmp_path, sample_npz):
    import keras

    inputs = keras.Input((784,))
    hidden = keras.ops.sort(keras.layers.Dense(16, activation="relu")(inputs), axis=-1)  # TOPK_V2 in TFLite
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    model.save(tmp_path / "sort.keras")
    out = tmp_path / "out" / "m.onnx"
    result = run_digits("export", tmp_path / "sort.keras", "--out", out, "--data", sample_npz,
                        "--int8", "--tflite", "--micro")
    assert_one_line_error(result, 1, "sort.keras", "TFLite Micro has no kernel for the model's TOPK_V2 op")
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_micro_needs_tflite_int8_and_1000_digits(trained_mlp, tmp_path, small_npz):
    result = run_digits("export", trained_mlp, "--out", tmp_path / "m.onnx", "--micro")
    assert_one_line_error(result, 2, "--micro needs --tflite and --int8")
    result = run_digits("export", trained_mlp, "--out", tmp_path / "m.onnx", "--data", small_npz,
                        "--int8", "--tflite", "--micro")  # 800 digits in all
    assert_one_line_error(result, 1, "800 digits; the --micro check needs at least 1,000")
    assert not any(tmp_path.iterdir())


def test_a_failed_litert_check_exits_4_and_leaves_no_model(trained_mlp, small_npz, tmp_path, monkeypatch, capsys):
    from digits.batch import litert_model

    real_run = litert_model.LiteRtClassifier._run

    def tampered(self, feed):  # the float file's answers, each moved one class on (still distributions:
        answers = real_run(self, feed)  # a file whose outputs are not is refused when it is loaded);
        if self.output_scale is None:  # its digit_score, the last column, left as it is
            answers[:, :10] = np.roll(answers[:, :10], 1, axis=1)
        return answers

    monkeypatch.setattr(litert_model.LiteRtClassifier, "_run", tampered)
    out = tmp_path / "m.onnx"
    code, _, err = run_main(["export", trained_mlp, "--out", out, "--data", small_npz, "--tflite"], capsys)
    assert code == 4, err
    errors = [line for line in err.splitlines() if line.startswith("digits: error:")]
    assert len(errors) == 1 and "tflite: probabilities differ by up to" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parity.json"]
    assert json.loads(out.with_name("m.parity.json").read_text())["tflite"]["passed"] is False


def test_a_small_cnn_goes_through_every_litert_file(tmp_path, sample, sample_npz, monkeypatch):
    import keras

    from digits.batch.litert_model import LiteRtClassifier
    from digits.exporter.export import export
    from digits.trainer import model as model_module
    from digits.trainer.model import predict_keras

    cnn = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    # Trained enough for the int8 gates' margins (an untrained net's labels are coin flips); seeded, so
    # that its int8 files' digit_score error is the same on every run.
    keras.utils.set_random_seed(0)
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cnn.fit(sample.x_train[..., None] / 255.0, sample.y_train, epochs=3, batch_size=64, verbose=0)
    cnn.save(tmp_path / "cnn.keras")
    calls = []
    monkeypatch.setattr(model_module, "predict_keras", lambda model, digits, **kw: calls.append(len(digits))
                        or predict_keras(model, digits, **kw))
    result = export(tmp_path / "cnn.keras", tmp_path / "cnn.onnx", data=sample_npz, int8=True, tflite=True,
                    micro=True, log=lambda _: None)
    assert result.parity["passed"], result.parity
    # Keras answers once: the probe for logits, then each parity case, shared by the ONNX and LiteRT checks.
    assert calls == [2000, 2000, 4, 4, 256, 1, 4096]
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"} <= set(result.parity["micro"]["ops"])
    probs = LiteRtClassifier(tmp_path / "cnn.tflite").predict(sample.x_test[:50])
    np.testing.assert_allclose(probs, predict_keras(cnn, sample.x_test[:50]), atol=1e-5, rtol=1e-5)


def test_inspect_shows_a_tflite_files_contract_and_metadata(exported, tmp_path):
    out, _ = exported
    result = run_digits("inspect", out.with_name("m.micro.tflite"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ops"] == OPS
    assert info["inputs"] == [{"name": "image", "dtype": "uint8", "shape": [1, 28, 28],
                               "quantization": {"scale": 1.0, "zero_point": 0}}]
    assert info["outputs"][0]["dtype"] == "int8" and info["outputs"][0]["shape"] == [1, 10]
    assert info["outputs"][1]["name"] == "digit_score" and info["outputs"][1]["shape"] == [1]
    assert info["metadata"]["litert_format"] == "micro" and info["metadata"]["labels.txt"] == "0 1 2 3 4 5 6 7 8 9"
    text = run_digits("inspect", out.with_name("m.tflite")).stdout
    assert "image           uint8    [batch, 28, 28]" in text and "input_contract: image: uint8" in text
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 100)
    assert_one_line_error(run_digits("inspect", garbage), 1, str(garbage), "not a loadable LiteRT model")


def test_a_tflite_file_without_digit_score_still_classifies(exported, real_digits, tmp_path):
    """A file exported before the score (probabilities only) gives no score and the same probabilities;
    outputs that cannot be told apart are refused in one line."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from digits.batch.litert_model import LiteRtClassifier
    from digits.core.errors import ModelError

    out, _ = exported
    both = LiteRtClassifier(out.with_name("m.tflite"))

    def rewritten(name, keep):
        model = schema.ModelT.InitFromPackedBuf(bytearray(out.with_name("m.tflite").read_bytes()), 0)
        graph = model.subgraphs[0]
        graph.outputs = keep(graph)
        model.signatureDefs = []
        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        (tmp_path / name).write_bytes(bytes(builder.Output()))
        return tmp_path / name

    old = LiteRtClassifier(rewritten("old.tflite", lambda g: [i for i in g.outputs if len(g.tensors[i].shape) == 2]))
    probabilities, scores = old.scored(real_digits[:50])
    assert scores is None and old.threshold is None and "digit_score" not in old.describe()
    np.testing.assert_array_equal(probabilities, both.predict(real_digits[:50]))
    assert both.threshold is not None and "digit_score (not a digit under" in both.describe()
    twice = rewritten("twice.tflite", lambda g: [*g.outputs, *g.outputs])
    with pytest.raises(ModelError, match="needs one input, uint8"):
        LiteRtClassifier(twice)
