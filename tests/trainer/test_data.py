"""Every MNIST source, written small by the test, read back; and broken ones refused."""

import gzip
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from digits.core.errors import DataError
from digits.trainer.data import load_mnist
from digits.trainer.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from tests.conftest import assert_one_line_error, run_digits


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, data, *, gz: bool = False, dotted: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = {
        "train-images-idx3-ubyte": (data.x_train, IMAGES_MAGIC),
        "train-labels-idx1-ubyte": (data.y_train, LABELS_MAGIC),
        "t10k-images-idx3-ubyte": (data.x_test, IMAGES_MAGIC),
        "t10k-labels-idx1-ubyte": (data.y_test, LABELS_MAGIC),
    }
    for name, (array, magic) in names.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        raw = idx_bytes(array, magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def assert_same(loaded, expected):
    np.testing.assert_array_equal(loaded.x_train, expected.x_train)
    np.testing.assert_array_equal(loaded.y_train, expected.y_train)
    np.testing.assert_array_equal(loaded.x_test, expected.x_test)
    np.testing.assert_array_equal(loaded.y_test, expected.y_test)
    assert loaded.x_train.dtype == np.uint8 and loaded.y_train.dtype == np.int64


def test_sample_is_stratified_4000_1000_real_digits(sample):
    assert sample.x_train.shape == (4000, 28, 28) and sample.x_test.shape == (1000, 28, 28)
    assert np.bincount(sample.y_test).tolist() == [100] * 10
    assert np.bincount(sample.y_train).tolist() == [400] * 10
    # Shuffled, not sorted by class as in the file.
    assert len(set(sample.y_train[:50].tolist())) > 5
    assert sample.x_train.max() == 255 and sample.x_train.dtype == np.uint8


def test_no_data_falls_back_to_sample_with_notice(tmp_path, monkeypatch, small):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached Keras MNIST
    monkeypatch.setattr(
        "digits.trainer.data.load_keras_mnist", lambda: (_ for _ in ()).throw(DataError("offline"))
    )
    notices = []
    data = load_mnist(None, notice=notices.append)
    assert len(notices) == 1 and "offline" in notices[0] and "bundled sample" in notices[0]
    assert len(data.x_train) == 4000


def test_keras_cached_npz_is_used_without_download(tmp_path, monkeypatch, small):
    (tmp_path / "datasets").mkdir()
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=small.x_train, y_train=small.y_train,
             x_test=small.x_test, y_test=small.y_test)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    data = load_mnist(None, notice=pytest.fail)
    assert_same(data, small)
    assert "Keras MNIST" in data.source


def test_npz(small, small_npz):
    assert_same(load_mnist(small_npz), small)


def test_npz_flat_784_and_wider_int_dtype(tmp_path, small):
    path = tmp_path / "flat.npz"
    np.savez(path, x_train=small.x_train.reshape(-1, 784).astype(np.int32), y_train=small.y_train.astype(np.uint8),
             x_test=small.x_test.reshape(-1, 784), y_test=small.y_test)
    assert_same(load_mnist(path), small)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_folder(tmp_path, small, gz, dotted):
    folder = write_idx_folder(tmp_path / "idx", small, gz=gz, dotted=dotted)
    assert_same(load_mnist(folder), small)


def write_image_folder(root: Path, images, labels, *, invert=False, scale=1) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        d = root / str(label)
        d.mkdir(parents=True, exist_ok=True)
        if invert:
            image = 255 - image
        if scale != 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(d / f"{i:05d}.png"), image)
    (root / "README.txt").write_text("not an image; skipped")


def test_image_folder_train_test(tmp_path, small):
    write_image_folder(tmp_path / "imgs" / "train", small.x_train[:100], small.y_train[:100])
    write_image_folder(tmp_path / "imgs" / "test", small.x_test[:40], small.y_test[:40])
    data = load_mnist(tmp_path / "imgs")
    # Files are listed by class folder, then name.
    order = np.argsort(small.y_train[:100], kind="stable")
    np.testing.assert_array_equal(data.x_train, small.x_train[:100][order])
    np.testing.assert_array_equal(data.y_train, small.y_train[:100][order])
    assert len(data.x_test) == 40


def test_image_folder_classes_only_splits_off_test(tmp_path, small):
    write_image_folder(tmp_path / "imgs", small.x_train[:200], small.y_train[:200], invert=True)
    data = load_mnist(tmp_path / "imgs")
    assert len(data.x_train) + len(data.x_test) == 200
    assert 35 <= len(data.x_test) <= 45
    assert set(data.y_test.tolist()) == set(range(10))  # stratified
    # Dark-on-light images are inverted back to MNIST's white on black.
    assert data.x_train[:, 0, :].mean() < 10
    assert "held out" in data.source
    again = load_mnist(tmp_path / "imgs")  # fixed seed: the same split
    np.testing.assert_array_equal(again.y_test, data.y_test)


# --- broken inputs: one clear error naming the file and what is wrong ---


def test_idx_bad_magic(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small)
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(small.y_train, IMAGES_MAGIC))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: bad magic number 0x00000803"):
        load_mnist(folder)


def test_idx_truncated(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated"):
        load_mnist(folder)


def test_idx_truncated_gzip(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small, gz=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read"):
        load_mnist(folder)


def test_idx_label_count_mismatch(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(small.y_train[:-3], LABELS_MAGIC))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*597 labels for 600 images"):
        load_mnist(folder)


def test_idx_label_out_of_range(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small)
    labels = small.y_test.copy()
    labels[7] = 12
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, LABELS_MAGIC))
    with pytest.raises(DataError, match=r"label 12 at index 7 is outside 0..9"):
        load_mnist(folder)


def test_idx_incomplete_folder(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte"):
        load_mnist(folder)


def test_npz_object_array_is_not_unpickled(tmp_path, small):
    path = tmp_path / "evil.npz"
    np.savez(path, x_train=np.array([object()] * 3, dtype=object), y_train=small.y_train,
             x_test=small.x_test, y_test=small.y_test)
    with pytest.raises(DataError, match=r"evil.npz x_train: holds Python objects"):
        load_mnist(path)


def test_npz_missing_key_and_float_pixels(tmp_path, small):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=small.x_train, y_train=small.y_train)
    with pytest.raises(DataError, match=r"missing arrays x_test, y_test"):
        load_mnist(path)
    path = tmp_path / "floats.npz"
    np.savez(path, x_train=small.x_train / 255.0, y_train=small.y_train, x_test=small.x_test, y_test=small.y_test)
    with pytest.raises(DataError, match=r"x_train: images must be integers 0..255, found dtype float64"):
        load_mnist(path)


def test_npz_not_a_zip(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match=r"junk.npz"):
        load_mnist(path)


def test_image_folder_corrupt_image(tmp_path, small):
    write_image_folder(tmp_path / "imgs", small.x_train[:30], small.y_train[:30])
    bad = tmp_path / "imgs" / "3" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError, match=r"broken.png: not a decodable image"):
        load_mnist(tmp_path / "imgs")


def test_unknown_path_kinds(tmp_path):
    with pytest.raises(DataError, match=r"no such file or folder"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"neither the four MNIST IDX files"):
        load_mnist(tmp_path / "empty")


@pytest.mark.tf
def test_cli_bad_data_is_one_line_exit_1(tmp_path, small):
    folder = write_idx_folder(tmp_path / "idx", small)
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    result = run_digits("train", "--data", folder, "--out", tmp_path / "run", "--epochs", "1")
    assert_one_line_error(result, 1, "train-images-idx3-ubyte", "truncated header")
    assert not (tmp_path / "run" / "model.keras").exists()


# Issue 21, classes 11 and 12.


def test_image_folder_reads_subfolders_of_class_folders(tmp_path, small):
    """0/more/*.png are zeros too (as `digits classify` walks them); hidden folders are a tool's."""
    digits, labels = small.x_train[:60], small.y_train[:60]
    write_image_folder(tmp_path / "imgs" / "train", digits[:30], labels[:30])
    for i, (digit, label) in enumerate(zip(digits[30:], labels[30:])):
        deeper = tmp_path / "imgs" / "train" / str(label) / "more" / ("deeper" if i % 2 else "")
        deeper.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(deeper / f"extra{i:03d}.png"), digit)
    hidden = tmp_path / "imgs" / "train" / "3" / ".ipynb_checkpoints"
    hidden.mkdir(parents=True)
    cv2.imwrite(str(hidden / "copy.png"), digits[0])
    write_image_folder(tmp_path / "imgs" / "test", small.x_test[:20], small.y_test[:20])
    data = load_mnist(tmp_path / "imgs")
    assert len(data.x_train) == 60
    assert sorted(data.y_train.tolist()) == sorted(labels.tolist())
    loop = tmp_path / "imgs" / "train" / "4" / "more" / "loop"
    loop.symlink_to(tmp_path / "imgs" / "train" / "4")
    with pytest.raises(DataError, match="symlink loop"):
        load_mnist(tmp_path / "imgs")


def test_per_class_accuracy_is_null_for_a_class_without_test_digits():
    from digits.trainer.metrics import score

    labels = np.array([0, 0, 1, 2, 2])
    probabilities = np.eye(10)[[0, 1, 1, 2, 2]]
    per_class = score(probabilities, labels)["per_class_accuracy"]
    assert per_class["0"] == 0.5 and per_class["1"] == 1.0 and per_class["2"] == 1.0
    assert [per_class[str(c)] for c in range(3, 10)] == [None] * 7
