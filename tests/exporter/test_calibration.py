"""The one calibration reader: what onnxruntime's quantizer reads, for the export and the benchmark alike."""

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from digits.core.contract import INPUT_NAME
from digits.exporter.quantize import calibration_reader


def test_reader_gives_every_digit_once_as_uint8_batches_of_the_input():
    digits = np.arange(600 * 28 * 28, dtype=np.int64).reshape(600, 28, 28) % 256
    reader = calibration_reader(digits, batch=250)
    assert isinstance(reader, CalibrationDataReader)
    batches = list(iter(reader.get_next, None))
    assert [list(b) for b in batches] == [[INPUT_NAME]] * 3
    assert [len(b[INPUT_NAME]) for b in batches] == [250, 250, 100]
    assert all(b[INPUT_NAME].dtype == np.uint8 and b[INPUT_NAME].flags.c_contiguous for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[INPUT_NAME] for b in batches]), digits.astype(np.uint8))
    assert reader.get_next() is None  # read once: a second quantization needs a new reader


def test_quantize_static_reads_it(tmp_path, small, exported_onnx):
    out = tmp_path / "m.int8.onnx"
    quantize_static(exported_onnx, out, calibration_reader(small.x_train[:100]), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
