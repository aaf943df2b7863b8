"""``facelm predict`` at scale: ``--shard K/N``, ``--resume`` and ``--format parquet`` (``facelm.shard``,
``facelm.record_table``), kept out of ``cli/predict.py`` so that command stays one screen of options."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from facelm.errors import UsageError

__all__ = ["AppendSink", "ParquetSink", "RunScope", "open_sink"]


class AppendSink:
    """JSONL appended to ``-o FILE`` record by record, each line written whole and flushed (``--resume``): a run
    killed at any moment leaves every finished record in the file and at most one cut line, which the next
    ``--resume`` drops."""

    def __init__(self, path: str):
        p = self.path = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(p, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise UsageError(f"--output {p}: cannot write ({e.strerror or e})") from None

    def write(self, rec: dict) -> None:
        from facelm.cli._common import dumps

        try:
            self._fh.write(dumps(rec) + "\n")
            self._fh.flush()
        except OSError as e:  # a full disk: the lines written so far stay, the next --resume goes on from them
            raise UsageError(f"--output {self.path}: cannot write ({e.strerror or e})") from None

    def close(self, ok: bool = True) -> None:  # noqa: ARG002 - what was written stays, finished or not
        try:
            self._fh.close()
        except OSError:  # already reported by write()
            pass


class ParquetSink:
    """``--format parquet -o FILE``: the records as a Parquet table (``facelm.record_table``), written
    atomically."""

    def __init__(self, path: str, warn):
        from facelm.record_table import ParquetRecordWriter

        self._w = ParquetRecordWriter(path, warn=warn)

    def write(self, rec: dict) -> None:
        self._w.write(rec)

    def close(self, ok: bool = True) -> None:
        self._w.close(ok)


def open_sink(fmt: str, output: str, resume: bool, warn):
    """The sink of ``--format parquet`` or ``--resume``; None for the ordinary formats (``cli/predict._Sink``)."""
    if fmt == "parquet":
        return ParquetSink(output, warn)
    if resume:
        return AppendSink(output)
    return None


class RunScope:
    """What this run does of its sources: its ``--shard`` and, with ``--resume``, the records already in ``-o``.

    Checks the options first (usage errors, before any work): ``--resume`` needs ``-o FILE`` and JSONL; Parquet
    needs ``-o FILE`` (it is binary) that can seek (not a pipe, FIFO or terminal; ``/dev/null`` is fine) and
    pyarrow.
    """

    def __init__(self, shard: str | None, resume: bool, output: str, fmt: str):
        from facelm.shard import parse_shard, read_done

        to_stdout = output in ("", "-")
        if resume and to_stdout:
            raise UsageError("--resume needs -o FILE (the file to continue)")
        if resume and fmt != "jsonl":
            raise UsageError(f"--resume works with --format jsonl (records appended line by line), not {fmt}")
        if fmt == "parquet":
            if to_stdout:
                raise UsageError("--format parquet needs -o FILE (Parquet is binary; stdout carries text)")
            from facelm.record_table import import_pyarrow, unseekable

            if why := unseekable(output):  # its writer seeks: a pipe would fail at the first write (lseek failed)
                raise UsageError(f"--output {output}: --format parquet needs a file it can seek in, and this is "
                                 f"{why}; write to a file and copy it (or use --format jsonl)")
            import_pyarrow("--format parquet")
        self.shard = parse_shard(shard) if shard is not None else None
        self.output = output
        self.schemes: set[str] = set()
        self.tails: dict[str, dict] = {}  # each video's last records in the file (FaceTracker.seed)
        self.done = read_done(output, schemes=self.schemes, tails=self.tails) if resume else set()
        self.skipped = 0

    def check_scheme(self, scheme: str) -> None:
        """``UsageError`` when the file being resumed holds faces of another scheme than this run writes."""
        other = sorted(self.schemes - {scheme})
        if other:
            raise UsageError(f"--resume {self.output}: holds {', '.join(other)} points and this run writes {scheme}; "
                             "resume with the earlier run's --to-scheme, or write to another -o")

    @property
    def select(self):
        return self.shard.keep if self.shard is not None else None

    def items(self, items: Iterable) -> Iterator:
        """``items`` less those whose record is already in the file being resumed."""
        for it in items:
            if self.done and (it.name, it.frame) in self.done:
                self.skipped += 1
                continue
            yield it

    def found_any(self) -> bool:
        """Were there sources, though none came to this run (all in other shards, or all done before)?"""
        return self.skipped > 0 or (self.shard is not None and self.shard.seen > 0)

    def note(self) -> str:
        parts = []
        if self.shard is not None:
            parts.append(f"shard {self.shard}: {self.shard.kept} of {self.shard.seen} files")
        if self.done:
            parts.append(f"resumed: {self.skipped} images already done")
        return "; ".join(parts)
