"""Predict at scale: which sources a run does (``facelm predict --shard K/N``) and which it has done already
(``--resume``), so that Slurm arrays and Kubernetes indexed jobs run the same command line unchanged.

**Shards.** ``--shard K/N`` (K = 0 .. N-1, as ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-(N-1)`` and Kubernetes'
``$JOB_COMPLETION_INDEX`` count) keeps the files whose *name* (the path as given or as found in a folder, list or
stdin; the ``"image"`` of the records) hashes to K: ``blake2b(name) mod N``. A stable hash and not Python's
``hash()`` (salted per process), and the name rather than the position in the enumerated list, because:

* every machine decides on its own, without enumerating the whole input first (``find | facelm predict -``
  streams);
* a file keeps its shard when files are added to or removed from the input, so each shard's ``--resume`` file stays
  valid when the list changes between an interrupted run and its restart;
* the N shards are disjoint and together cover every file exactly once, whatever the order of the input.

A video is one file: all its frames go to one shard (decided before it is decoded). Shard sizes are balanced
statistically (for M files, each gets M/N +- sqrt(M/N)), not exactly.

**Resume.** ``--resume -o FILE`` reads the JSONL records already in FILE, skips the images (and video frames)
they cover, and appends the new records to FILE as it goes (each written and flushed whole). A line that a kill
cut off (the last one, without its newline) is dropped and its image done again; any other line that is not a
record stops the run (exit 3). Images with an error record count as done (every image appears once); to retry
them, remove their lines first (``jq -c 'select(.error == null)'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from facelm.errors import DataError, UsageError

__all__ = ["Shard", "parse_shard", "read_done", "shard_of"]

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_of(name: str, count: int) -> int:
    """The shard (0 .. count-1) of a source name: a stable hash, the same on every machine and Python."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass
class Shard:
    """Shard ``index`` of ``count``; :meth:`keep` is the ``select`` of ``facelm.sources.iter_sources``, counting
    the names it was asked about (``seen``) and kept (``kept``)."""

    index: int
    count: int
    seen: int = 0
    kept: int = 0

    def keep(self, name: str) -> bool:
        self.seen += 1
        ok = self.count == 1 or shard_of(name, self.count) == self.index
        self.kept += ok
        return ok

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> :class:`Shard`; ``UsageError`` naming `shard` unless N >= 1 and 0 <= K < N."""
    m = _SHARD_RE.match(str(text))
    if not m:
        raise UsageError(f"`shard` must be K/N (shard K of N, K = 0..N-1, e.g. 0/4), got {text!r}")
    k, n = int(m[1]), int(m[2])
    if n < 1:
        raise UsageError(f"`shard` {text}: N must be at least 1")
    if k >= n:
        raise UsageError(f"`shard` {text}: K must be 0..{n - 1} (shards count from 0: 0/{n} .. {n - 1}/{n})")
    return Shard(k, n)


def _key(rec: dict) -> tuple[str, int | None]:
    frame = rec.get("frame")
    return str(rec["image"]), (int(frame) if frame is not None else None)


_RECORD_START = b'{"image": '  # how every predict JSONL record begins (``facelm.runtime.results``)


def _add_tail(tails: dict, rec: dict) -> None:
    """Keep ``rec`` among the last two records of its video, and the largest track id the video has had."""
    tail = tails.setdefault(str(rec["image"]), {"records": [], "max_track": -1})
    tail["records"] = [*tail["records"][-1:], rec]
    ids = [f.get("track") for f in rec.get("faces") or () if isinstance(f, dict)]
    tail["max_track"] = max([tail["max_track"], *(i for i in ids if isinstance(i, int) and not isinstance(i, bool))])


def read_done(path: str | Path, *, truncate: bool = True, schemes: set[str] | None = None,
              tails: dict[str, list[dict]] | None = None) -> set[tuple[str, int | None]]:
    """The ``(image, frame)`` of every record in the JSONL file ``path`` (an empty set when it does not exist);
    with ``schemes``, the scheme of every face in it is added to that set (a run must not append faces of another
    scheme: ``--to-scheme`` differing from the earlier run's); with ``tails``, each video's last two records (in
    file order) and the largest track id it has had go into that dict under the video's name, as ``{"records":
    [...], "max_track": N}`` (``FaceTracker.seed``: a resumed video goes on with its tracks and smoothing).

    A last line without its newline (a run killed mid-write) is not counted, and with ``truncate`` it is cut off
    the file, so that appending starts on a fresh line.

    Raises:
        DataError: a complete line is not a predict record (the message names the file and the line).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return set()
    except OSError as e:
        raise DataError(f"{p}: cannot read the file to resume ({e.strerror or e})") from None
    end = data.rfind(b"\n") + 1  # the complete lines end here
    done: set[tuple[str, int | None]] = set()
    for i, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            done.add(_key(rec))
            if tails is not None and rec.get("frame") is not None:
                _add_tail(tails, rec)
            if schemes is not None:
                schemes.update(str(f["scheme"]) for f in rec.get("faces") or () if f.get("scheme"))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise DataError(f"{p}: line {i} is not a `facelm predict` JSONL record; `resume` continues the JSONL "
                            "output of an earlier run") from None
    tail = data[end:]
    if tail and not (tail.startswith(_RECORD_START) or _RECORD_START.startswith(tail)):
        # not the start of a record a killed run was writing: this is some other file, which must not be cut
        line_no = data[:end].count(b"\n") + 1
        raise DataError(f"{p}: line {line_no} is not a `facelm predict` JSONL record; `resume` continues the JSONL "
                        "output of an earlier run")
    if truncate and end < len(data):
        with open(p, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    return done
