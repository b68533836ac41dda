"""core.files on its own: what a path names, and atomic writes."""

import os
import socket

import pytest

from digits.core.atomic import atomic_path
from digits.core.files import FOLDER, MISSING, REGULAR, kind_of, require_file


def test_kind_of_names_every_kind_of_path(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        assert kind_of(tmp_path / "sock") == "a socket"
    assert kind_of(tmp_path / "file") == REGULAR
    assert kind_of(tmp_path / "folder") == FOLDER
    assert kind_of(tmp_path / "missing") == MISSING
    assert kind_of(tmp_path / "fifo") == "a FIFO (named pipe)"
    assert kind_of(tmp_path / "broken") == "a broken symlink"
    assert kind_of(tmp_path / "loop") == "a symlink loop"
    assert kind_of("/dev/null") == "a character device"
    assert kind_of("a\0b") == "not a valid path (it holds a NUL byte)"
    assert kind_of(str(tmp_path) + "/" + "x" * 300) == "a name too long for the system"


def test_require_file_says_what_the_path_is_instead(tmp_path):
    with pytest.raises(Exception, match="is a folder, not a model file"):
        require_file(tmp_path, "model file")
    with pytest.raises(Exception, match="no such model file"):
        require_file(tmp_path / "none.onnx", "model file")


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.onnx"]
    with atomic_path(target) as temp:
        temp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["model.onnx"]
