"""What a core install (no TensorFlow) does with an exported model: inspect it,
score it, benchmark it, and judge an int8 variant of it."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from digits.batch.model import OnnxClassifier
from tests.conftest import run_digits, run_fresh


def test_inspect(exported_onnx):
    result = run_digits("inspect", exported_onnx)
    assert result.returncode == 0, result.stderr
    assert "image           uint8    [batch, 28, 28]" in result.stdout
    assert "probabilities   float32  [batch, 10]" in result.stdout
    assert "label           int64    [batch]" in result.stdout
    info = json.loads(run_digits("inspect", exported_onnx, "--json").stdout)
    assert info["opset"]["ai.onnx"] == 18 and info["bytes"] == exported_onnx.stat().st_size
    assert {"class_labels", "input_contract", "test_accuracy", "source_sha256"} <= info["metadata"].keys()
    # The committed model was exported by tf2onnx 1.17, which wrote producer_version "1.17.0 None".
    assert "producer tf2onnx 1.17.0\n" in result.stdout.split("inputs:")[0] + "\n"
    assert info["producer"] == "tf2onnx 1.17.0"


def test_exported_metadata_names_no_local_path(tmp_path, small):
    """Issue 21, class 27: a shipped model records the data's form and file names, not where it lay."""
    from digits.exporter.metadata import training_metrics
    from digits.trainer.data import load_mnist
    from tests.trainer.test_data import write_idx_folder, write_image_folder

    idx = write_idx_folder(tmp_path / "private" / "mnist-idx", small, gz=True)
    np.savez(tmp_path / "private" / "mine.npz", x_train=small.x_train, y_train=small.y_train,
             x_test=small.x_test, y_test=small.y_test)
    write_image_folder(tmp_path / "private" / "scans", small.x_train[:30], small.y_train[:30])
    sources = [load_mnist(p).source for p in (idx, tmp_path / "private" / "mine.npz", tmp_path / "private" / "scans")]
    assert sources[0] == ("IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                          "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)")
    assert sources[1] == "npz mine.npz" and sources[2].startswith("image folder scans ")
    assert not any("private" in s or str(tmp_path) in s for s in sources)
    # A metrics.json written before this rule still exports without the path.
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9, "data_source": f"IDX files in {idx}"}))
    assert training_metrics(tmp_path / "model.keras") == {"test_accuracy": "0.9",
                                                          "data_source": "IDX files in mnist-idx"}


def test_evaluate_onnx_scores_without_tensorflow(exported_onnx, small, small_npz):
    stdout, heavy = run_fresh(["evaluate", exported_onnx, "--data", small_npz, "--json"])
    assert not heavy & {"tensorflow", "keras"}
    report = json.loads(stdout)
    predicted = OnnxClassifier(exported_onnx).labels(small.x_test)
    assert report["test_accuracy"] == pytest.approx(float((predicted == small.y_test).mean()))
    assert report["test_size"] == len(small.x_test) and np.sum(report["confusion_matrix"]) == len(small.x_test)
    assert np.trace(report["confusion_matrix"]) == int((predicted == small.y_test).sum())


def test_bench_reports_digits_per_second_as_batch_over_median_time(exported_onnx, monkeypatch):
    """The number a user reads is batch / median seconds per call (warm-up excluded): with a
    clock that makes runs take 0.1, 0.5, 0.1, 0.1 and 0.9 s, batch b gives b / 0.1, not b / mean."""
    from digits.exporter import throughput

    durations = [0.1, 0.5, 0.1, 0.1, 0.9]
    ticks = {"now": 0.0, "calls": 0}

    def clock():
        if ticks["calls"] % 2:  # the end of a timed run
            ticks["now"] += durations[(ticks["calls"] // 2) % len(durations)]
        ticks["calls"] += 1
        return ticks["now"]

    monkeypatch.setattr(throughput.time, "perf_counter", clock)
    results = throughput.measure({"model.onnx": exported_onnx}, None, batch_sizes=(1, 64))
    assert results == {"model.onnx": {1: pytest.approx(10.0), 64: pytest.approx(640.0)}}
    table = throughput.format_table(results).splitlines()
    assert table[1].split() == ["1", "10"] and table[2].split() == ["64", "640"]


def test_bench_command_covers_every_batch_size(exported_onnx):
    result = run_digits("bench", exported_onnx, "--json")
    assert result.returncode == 0, result.stderr
    rates = json.loads(result.stdout)["mlp.onnx"]
    assert list(rates) == ["1", "64", "1024", "8192"]
    assert all(np.isfinite(r) and r > 0 for r in rates.values())


@pytest.fixture(scope="module")
def skewed_int8(exported_onnx, sample, tmp_path_factory):
    """A real int8 model of the float one, with class 0's final bias raised: it disagrees on many digits."""
    from digits.exporter.quantize import calibration_digits, quantize_int8

    folder = tmp_path_factory.mktemp("int8")
    path = folder / "mlp.int8.onnx"
    quantize_int8(exported_onnx, path, calibration_digits(sample.x_train))
    model = onnx.load(path)
    made_by = {out: n for n in model.graph.node for out in n.output}
    node = made_by[next(n for n in model.graph.node if n.op_type == "Softmax").input[0]]
    while node.op_type != "Add":  # up past the temperature's Mul (and any quantize steps) to the logits' bias
        node = made_by[node.input[0]]
    bias = next(t for t in model.graph.initializer if t.name in node.input)
    raised = numpy_helper.to_array(bias).copy()
    raised[0] += 5.0  # turns about 6% of labels; outlier exposure keeps the logits of a trained model close
    bias.CopyFrom(numpy_helper.from_array(raised, bias.name))
    onnx.save(model, path)
    return path


def test_int8_check_refuses_labels_that_disagree(exported_onnx, skewed_int8, sample):
    from digits.exporter.quantize import check_int8

    int8_labels = OnnxClassifier(skewed_int8).labels(sample.x_test)
    # Judged against its own labels, the int8 model loses no accuracy: only agreement can fail it.
    check = check_int8(exported_onnx, skewed_int8, sample.x_test, int8_labels)
    assert check.numbers["label_agreement"] < 0.99 and check.numbers["accuracy_drop_points"] <= 0
    assert check.passed is False
    assert "labels agree with the float model" in check.failure and "accuracy" not in check.failure


def test_int8_check_refuses_an_accuracy_drop(exported_onnx, skewed_int8, sample):
    """99.2% agreement passes the agreement gate; the 0.8 points of accuracy it costs do not."""
    from digits.exporter.quantize import check_int8

    digits = np.concatenate([sample.x_test, sample.x_train])
    float_labels = OnnxClassifier(exported_onnx).labels(digits)
    int8_probs = OnnxClassifier(skewed_int8).predict(digits)
    differ = float_labels != int8_probs.argmax(axis=1)
    # Only digits whose int8 label is far from a tie, so that the counts below are exact.
    top_two = np.sort(int8_probs, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 0.5
    chosen = np.concatenate([np.flatnonzero(~differ & clear)[:992], np.flatnonzero(differ & clear)[:8]])
    assert len(chosen) == 1000
    check = check_int8(exported_onnx, skewed_int8, digits[chosen], float_labels[chosen])
    assert check.numbers["label_agreement"] == pytest.approx(0.992)
    assert check.numbers["accuracy_drop_points"] == pytest.approx(0.8)
    assert check.passed is False
    assert "accuracy drops 0.80 points" in check.failure and "labels agree" not in check.failure


def test_int8_check_refuses_a_model_that_is_not_smaller(exported_onnx, small):
    from digits.exporter.quantize import check_int8

    check = check_int8(exported_onnx, exported_onnx, small.x_test, small.y_test)
    assert check.numbers["label_agreement"] == 1.0 and check.numbers["accuracy_drop_points"] == 0
    assert check.passed is False and "weights are 100% of the float model's" in check.failure
