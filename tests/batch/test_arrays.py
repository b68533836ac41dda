"""DigitArray on its own: what it accepts, what it refuses, and the rows it gives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digits.batch.arrays import ArrayError, DigitArray


def test_uint8_and_float_arrays_give_the_same_digits_in_chunks(tmp_path, small):
    digits = small.x_test[:50]
    np.save(tmp_path / "u8.npy", digits)
    np.save(tmp_path / "f.npy", (digits / 255.0).astype(np.float32).reshape(50, 784))
    for name in ("u8.npy", "f.npy"):
        array = DigitArray(str(tmp_path / name))
        assert len(array) == 50
        chunks = list(array.chunks(16))
        assert [start for start, _ in chunks] == [0, 16, 32, 48]
        np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), digits)


@pytest.mark.parametrize("array, words", [
    (np.zeros((3, 30, 30), np.uint8), "shape (3, 30, 30)"),
    (np.zeros((3, 28, 28), np.int32), "dtype int32"),
    (np.full((3, 28, 28), 2.0, np.float32), "must lie in 0..1"),
    (np.full((3, 28, 28), np.nan, np.float32), "NaN"),
    (np.asfortranarray(np.zeros((3, 28, 28), np.uint8)), "Fortran"),
])
def test_arrays_that_are_not_digits_are_refused_with_the_reason(tmp_path, array, words):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(ArrayError) as refused:
        list(DigitArray(str(tmp_path / "x.npy")).chunks(2))
    assert words in str(refused.value)


def test_a_truncated_array_is_refused_at_open(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 28, 28), np.uint8))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[: len(data) - 784 * 3])
    with pytest.raises(ArrayError, match="header says 10 rows, file holds 7"):
        DigitArray(str(tmp_path / "x.npy"))


def test_an_object_array_is_refused_never_unpickled(tmp_path):
    np.save(tmp_path / "x.npy", np.array([object()] * 3), allow_pickle=True)
    with pytest.raises(ArrayError, match="Python objects"):
        DigitArray(str(tmp_path / "x.npy"))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 300), chunk=st.integers(1, 128), seed=st.integers(0, 2**16))
def test_chunks_of_any_size_give_every_row_once(tmp_path_factory, rows, chunk, seed):
    digits = np.random.default_rng(seed).integers(0, 256, (rows, 28, 28), dtype=np.uint8)
    path = tmp_path_factory.mktemp("a") / "x.npy"
    np.save(path, digits)
    got = [c for _, c in DigitArray(str(path)).chunks(chunk)]
    np.testing.assert_array_equal(np.concatenate(got) if got else np.zeros((0, 28, 28), np.uint8), digits)
