"""Inputs of ``facelm predict``: files, folders, globs, list files, ``-`` (paths on stdin) and videos.

Each SOURCE argument expands to a stream of :class:`SourceItem` (one per image or per video frame), lazily and in
a stable order, so a folder of thousands of files or an endless ``find | facelm predict -`` starts at once:

* a **file** is used as given, whatever its name (a non-image gives an error record, not a silent skip), except
  that ``.txt``/``.lst``/``.list`` files are **list files** and video suffixes (:data:`VIDEO_SUFFIXES`) are videos;
* a **folder** gives its image and video files (by suffix, sorted by name); ``recursive=True`` descends into
  sub-folders (hidden files and folders are skipped);
* a **glob** (``*``, ``?``, ``[``; ``**`` matches sub-folders) gives the matches in sorted order;
* a **list file** holds one path per line (blank lines and ``#`` comments ignored); relative paths are relative
  to the list file's folder (the ultralytics convention); each entry may be a file or a folder;
* ``-`` reads paths from stdin, one per line, relative to the working directory (``find DIR -name '*.jpg' |
  facelm predict -``);
* a **video** gives every ``vid_stride``-th frame (frames 0, N, 2N, ...), decoded with OpenCV, with the frame
  number in :attr:`SourceItem.frame`.

A source that matches nothing gives one :class:`SourceItem` with ``error`` set (reported per input, the run goes
on).
"""

from __future__ import annotations

import glob
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from facelm.imageio import IMAGE_SUFFIXES

__all__ = ["LIST_SUFFIXES", "VIDEO_SUFFIXES", "SourceItem", "describe_sources", "is_video", "iter_sources"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif",
                  ".3gp", ".ts", ".mts")
LIST_SUFFIXES = (".txt", ".lst", ".list")
_IMAGE = frozenset(s.lower() for s in IMAGE_SUFFIXES)
_VIDEO = frozenset(VIDEO_SUFFIXES)


@dataclass
class SourceItem:
    """One image to process.

    Attributes:
        name: the path as the user gave it (or as found in a folder/list), used in the output records.
        path: the file to read.
        frame: the frame number for a video frame, else None.
        image: the decoded frame ``(H, W, 3)`` uint8 RGB for video frames (images are read later, in parallel).
        error: set when the source failed (missing path, unreadable list, video that does not open).
        found: with ``error``, the file exists and is a video, its content failed (a failed input, as a corrupt
            image is; not a source that names nothing).
        fps: video frames: the video's frame rate as the file gives it (None or 0 when it does not).
    """

    name: str
    path: Path
    frame: int | None = None
    image: np.ndarray | None = None
    error: str | None = None
    fps: float | None = None
    found: bool = False


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _VIDEO


def _is_media(name: str) -> bool:
    s = os.path.splitext(name)[1].lower()
    return s in _IMAGE or s in _VIDEO


def describe_sources() -> str:
    """A one-line summary of what a SOURCE can be (for the 'no images found' message)."""
    return (f"images ({', '.join(sorted(_IMAGE))}), videos ({', '.join(VIDEO_SUFFIXES)}), folders, globs, "
            f"list files ({', '.join(LIST_SUFFIXES)}) or '-' for paths on stdin")


def _walk_folder(folder: Path, recursive: bool) -> Iterator[Path]:
    """Media files under ``folder`` in sorted order; hidden entries skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    subdirs = []
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir():
                subdirs.append(e)
            elif _is_media(e.name):
                yield Path(e.path)
        except OSError:
            continue
    if recursive:
        for d in subdirs:
            yield from _walk_folder(Path(d.path), True)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _video_frames(path: Path, name: str, stride: int, warn: Callable[[str], None] | None = None
                  ) -> Iterator[SourceItem]:
    import cv2

    # FFmpeg's own log lines ("moov atom not found") would go to stderr beside facelm's one-line error record
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; a user's own setting wins
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield SourceItem(name, path, error="cannot open video (unknown format or corrupt file)", found=True)
        return
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        idx, got_any = 0, False
        while True:
            if idx % stride == 0:
                ok, frame = cap.read()
            else:
                ok = cap.grab()  # skipped frames are not decoded
                frame = None
            if not ok:
                break
            if frame is not None:
                got_any = True
                yield SourceItem(name, path, frame=idx, image=_frame_to_rgb(frame), fps=fps)
            idx += 1
        if not got_any:
            yield SourceItem(name, path, error="video has no readable frames", found=True)
        elif (note := _cut_short(name, idx, cap.get(cv2.CAP_PROP_FRAME_COUNT))) is not None:
            (warn or _python_warning)(note)
    finally:
        cap.release()


def _cut_short(name: str, frames: int, announced: float) -> str | None:
    """The warning for a video whose frames ran out clearly before the count its container announces (a file cut
    short: its first frames decode and the rest is missing), else None. The count is only a claim (some containers
    estimate it from the duration, some give 0 or -1), so a small shortfall is not one: under 90% and 3 frames."""
    try:
        claimed = int(announced)
    except (TypeError, ValueError, OverflowError):  # NaN or infinity
        return None
    if claimed <= 0 or frames >= 0.9 * claimed or claimed - frames < 3:
        return None
    return f"{name}: decoded {frames} of the {claimed} frames its container announces; the file may be truncated"


def _python_warning(msg: str) -> None:
    """The default ``warn`` of :func:`iter_sources` (Python callers); the CLI passes its ``warning:`` line."""
    import warnings

    warnings.warn(msg, RuntimeWarning, stacklevel=2)


def _frame_to_rgb(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.dtype != np.uint8:
        frame = (frame.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _regular(path: Path) -> bool:
    """A regular file, or a symlink to one (FIFOs, sockets and devices are not read: a FIFO blocks forever)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _file_items(path: Path, name: str, vid_stride: int, select=None, warn=None) -> Iterator[SourceItem]:
    if select is not None and not select(name):  # before a video is decoded
        return
    if is_video(path):
        if not _regular(path):  # (images are checked when read: imageio.read_image)
            yield SourceItem(name, path, error="not a regular file" if os.path.lexists(path)
                             else "no such file or folder")
            return
        yield from _video_frames(path, name, vid_stride, warn)
    else:
        yield SourceItem(name, path)


def _folder_items(p: Path, shown: str, recursive: bool, vid_stride: int, hint: str = "", select=None,
                  warn=None) -> Iterator[SourceItem]:
    """The image/video files of a folder, or one error item when it has none."""
    found = False
    for f in _walk_folder(p, recursive):
        found = True
        yield from _file_items(f, str(f), vid_stride, select, warn)
    if not found and (select is None or select(shown)):
        yield SourceItem(shown, p, error="folder has no image or video files" + hint)


def _entry(entry: str, base: Path | None, recursive: bool, vid_stride: int, select=None, warn=None
           ) -> Iterator[SourceItem]:
    """One path from a list file or stdin: a file or a folder (no globs, no nested list files)."""
    if "\0" in entry:  # no file system allows it: a list with NUL-separated names (`find -print0`)?
        if select is None or select(entry):
            yield SourceItem(entry, Path(entry.replace("\0", "?")), found=True,
                             error="the name holds a NUL byte (give one name per line; `find -print0` lists are "
                                   "not supported)")
        return
    p = Path(entry)
    if base is not None and not p.is_absolute():
        p = base / p
    shown = str(p) if base is not None else entry
    if p.is_dir():
        yield from _folder_items(p, shown, recursive, vid_stride, select=select, warn=warn)
    else:
        yield from _file_items(p, shown, vid_stride, select, warn)  # a missing file fails when read: one error


def _lines(stream: IO[str]) -> Iterator[str]:
    for line in stream:
        line = line.rstrip("\r\n")
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.strip()


def iter_sources(sources: Iterable[str], *, recursive: bool = False, vid_stride: int = 1,
                 stdin: IO[str] | None = None, select: Callable[[str], bool] | None = None,
                 warn: Callable[[str], None] | None = None) -> Iterator[SourceItem]:
    """Expand SOURCE arguments into items, lazily (see the module docstring).

    Args:
        sources: the SOURCE arguments.
        recursive: descend into sub-folders of folder sources.
        vid_stride: use every N-th video frame (N >= 1).
        stdin: the stream ``-`` reads (default ``sys.stdin``).
        select: keep only the files (and failed sources) whose name it accepts; asked once per file, before a
            video is decoded (``facelm predict --shard``, ``facelm.shard``).
        warn: receives a line for a video that ran out of frames clearly before the count its container announces
            (a file cut short; its frames so far are still given); default: a Python ``RuntimeWarning``.
    """
    if vid_stride < 1:
        raise ValueError("vid_stride must be at least 1")
    keep = select or (lambda name: True)
    for src in sources:
        if src == "":  # Path("") is the current folder: never what an empty argument (`"$UNSET"`) meant
            if keep(src):
                yield SourceItem(src, Path(src), error="empty path (give '.' for the current folder)")
            continue
        if src == "-":
            for line in _lines(stdin if stdin is not None else sys.stdin):
                yield from _entry(line, None, recursive, vid_stride, select, warn)
            continue
        p = Path(src)
        if p.is_dir():
            yield from _folder_items(p, src, recursive, vid_stride,
                                     hint="" if recursive else " (use --recursive for sub-folders)", select=select,
                                     warn=warn)
        elif p.is_file():
            if p.suffix.lower() in LIST_SUFFIXES:
                try:
                    # surrogateescape: a name that is not UTF-8 (as `find > list.txt` writes it) is a path like
                    # any other, as on stdin, instead of ending the list there
                    with open(p, encoding="utf-8-sig", errors="surrogateescape") as fh:
                        for line in _lines(fh):
                            yield from _entry(line, p.parent, recursive, vid_stride, select, warn)
                except (OSError, UnicodeDecodeError) as e:
                    if keep(src):
                        yield SourceItem(src, p,
                                         error=f"cannot read list file ({getattr(e, 'strerror', None) or e})")
            else:
                yield from _file_items(p, src, vid_stride, select, warn)
        elif os.path.lexists(src) and not _has_magic(src):  # a FIFO, socket, device or dangling link
            yield from _file_items(p, src, vid_stride, select, warn)  # one error record, from the reader
        elif _has_magic(src):
            matches = sorted(glob.glob(src, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files and keep(src):
                yield SourceItem(src, p, error="no files match this pattern")
            for m in files:
                yield from _file_items(Path(m), m, vid_stride, select, warn)
        elif keep(src):
            yield SourceItem(src, p, error="no such file or folder")
