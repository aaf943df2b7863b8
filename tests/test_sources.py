"""``facelm.sources``: what ``facelm predict`` reads -- files, folders, globs, list files, stdin and videos (every
n-th frame) -- and how a missing or unreadable source becomes an item with an error instead of an exception."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from conftest import graded_video

from facelm.sources import iter_sources


def _png(path: Path, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))
    return path


def test_sources_files_folders_globs_lists_stdin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for p in ("d/a.jpg", "d/b.png", "d/sub/c.jpg", "d/.hidden.jpg"):
        _png(tmp_path / p)
    (tmp_path / "d" / "notes.md").write_text("x")
    names = lambda items: [i.name for i in items]
    assert names(iter_sources(["d"])) == ["d/a.jpg", "d/b.png"]
    assert names(iter_sources(["d"], recursive=True)) == ["d/a.jpg", "d/b.png", "d/sub/c.jpg"]
    assert names(iter_sources(["d/**/*.jpg"])) == ["d/a.jpg", "d/sub/c.jpg"]
    assert names(iter_sources(["d/b.png", "d/notes.md"])) == ["d/b.png", "d/notes.md"]  # files used as given
    # list file: paths relative to the list file's folder, comments and blanks ignored, folders allowed
    (tmp_path / "d" / "list.txt").write_text("# my list\na.jpg\n\nsub\n")
    items = list(iter_sources(["d/list.txt"]))
    assert [Path(i.name) for i in items] == [Path("d/a.jpg"), Path("d/sub/c.jpg")]
    assert all(i.path.is_file() for i in items)
    # stdin
    assert names(iter_sources(["-"], stdin=io.StringIO("d/a.jpg\n\nd/sub/c.jpg\n"))) == ["d/a.jpg", "d/sub/c.jpg"]
    # misses are items with an error, not exceptions
    miss = list(iter_sources(["nope.jpg", "x*.png", str(tmp_path / "d" / "sub" / "empty")]))
    assert [m.error for m in miss][:2] == ["no such file or folder", "no files match this pattern"]
    (tmp_path / "e").mkdir()
    (e,) = iter_sources(["e"])
    assert "no image or video files" in e.error and "--recursive" in e.error





def test_video_every_nth_frame(tmp_path):
    v = graded_video(tmp_path / "clip.avi")
    items = list(iter_sources([str(v)], vid_stride=3))
    assert [i.frame for i in items] == [0, 3, 6, 9]
    assert items[0].image.shape == (48, 64, 3) and items[0].image.dtype == np.uint8
    assert abs(int(items[1].image.mean()) - 60) < 10  # frame 3 really is the 4th frame
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    (b,) = iter_sources([str(bad)])
    assert b.error


def test_a_list_file_with_a_name_that_is_not_utf8_keeps_every_entry(tmp_path):
    """`find . > list.txt` on a Latin-1 name: the list used to end there with "cannot read list file" (the entries
    after it lost); it is a path like any other, as on stdin."""
    import os

    _png(tmp_path / "a.png")
    bad = os.fsdecode(b"caf\xe9.png")
    (tmp_path / bad).write_bytes((tmp_path / "a.png").read_bytes())  # (cv2.imwrite crashes on such a str)
    _png(tmp_path / "z.png")
    (tmp_path / "list.txt").write_bytes(b"a.png\ncaf\xe9.png\nz.png\n")
    items = list(iter_sources([str(tmp_path / "list.txt")]))
    assert [Path(i.name).name for i in items] == ["a.png", bad, "z.png"]
    assert all(i.error is None and i.path.is_file() for i in items)
