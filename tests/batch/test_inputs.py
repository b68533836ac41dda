"""The walk: what a folder gives, in which order, and in runs of images for the workers."""

import os

from digits.batch.inputs import RUN, ArrayItem, ErrorItem, ImageItem, iter_runs


def iter_inputs(inputs):
    """iter_runs with every image as its own ImageItem."""
    for entry in iter_runs(inputs):
        yield from map(ImageItem, entry) if isinstance(entry, list) else [entry]


def test_a_folder_gives_sorted_items_with_subfolders_walked_in_place(tmp_path):
    for name in ("a.png", "c.npy", "d.JPG", "e.txt", "h.png", ".png", "..png", ".x.png", ".npy"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"")
    (tmp_path / "f").mkdir()  # empty: gives nothing
    os.mkfifo(tmp_path / "g.png")
    items = list(iter_inputs([str(tmp_path)]))
    root = os.path.join(str(tmp_path), "")
    assert items == [
        ArrayItem(root + ".npy"),  # an array whatever comes before ".npy", as when it is named
        ImageItem(root + ".x.png"),  # a hidden file with an extension; ".png" and "..png" have none
        ImageItem(root + "a.png"),
        ImageItem(root + "b/x.png"),
        ArrayItem(root + "c.npy"),
        ImageItem(root + "d.JPG"),
        ErrorItem(root + "g.png", "is a FIFO (named pipe), not a regular file"),
        ImageItem(root + "h.png"),
    ]


def test_images_come_in_runs_that_flatten_to_the_items(tmp_path):
    count = 2 * RUN + 10
    for i in range(count):
        (tmp_path / f"{i:04d}.png").write_bytes(b"")
    (tmp_path / "0100.npy").write_bytes(b"")  # an array in the middle ends a run
    runs = list(iter_runs([str(tmp_path)]))
    assert all(len(run) <= RUN for run in runs if isinstance(run, list))
    flat = [path for entry in runs for path in (entry if isinstance(entry, list) else [entry.source])]
    assert flat == [item.source for item in iter_inputs([str(tmp_path)])]
    assert len(flat) == count + 1
    assert isinstance(runs[1], ArrayItem) and runs[1].source.endswith("0100.npy")
