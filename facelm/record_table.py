"""``facelm predict`` records as Arrow tables and Parquet files (``--format parquet``, the Ray integration).

One row per image (or video frame), the same fields as a JSONL record (docs/predict.md), with fixed types:

* ``image``: string; ``frame``: int64 (null for images); ``width``, ``height``: int64 (null for failed images);
* ``faces``: list of struct: ``box`` list<double> (4), ``score`` double, ``angle`` double, ``landmarks``
  list<list<double>> (L x 2), ``scheme`` string, ``points`` list<int64> (only after a partial ``--to-scheme``),
  ``pose`` struct<yaw, pitch, roll: double> (68-point models), ``quality`` double, ``track`` int64 (video frames);
* ``error``: string (null when the image was read).

Every documented field is a column from the start, null where a record lacks it, whatever the first images hold.
Fields that a record carries beyond these (none that predict writes; a caller's own records) are kept: their types
are inferred from the first non-null value among the records of the first row group (a field that is null
throughout them becomes a string column). A field first seen after that is left out, with one warning.

Strings are UTF-8 in Parquet: a name that is not (a file name of other bytes, which Python holds with surrogate
escapes) is stored with its undecodable bytes written ``\\xNN`` (``utf8_text``).

pyarrow is an optional dependency: ``pip install 'facelm[parquet]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from facelm.errors import UsageError

__all__ = ["ParquetRecordWriter", "import_pyarrow", "record_schema", "records_table", "unseekable", "utf8_text"]

_TOP = ("image", "frame", "width", "height", "faces", "error")


def import_pyarrow(what: str = "`format` parquet"):
    """``pyarrow`` (and ``pyarrow.parquet``), or ``UsageError`` saying how to install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the writer
    except ImportError:
        raise UsageError(f"{what} needs pyarrow: pip install 'facelm[parquet]'") from None
    return pa


def _face_fields(pa) -> dict:
    """The per-face fields of docs/predict.md ("Output"), all of them: a column each even when no face has it."""
    f64 = pa.float64()
    pose = pa.struct([pa.field(k, f64) for k in ("yaw", "pitch", "roll")])
    return {"box": pa.list_(f64), "score": f64, "angle": f64, "landmarks": pa.list_(pa.list_(f64)),
            "scheme": pa.string(), "points": pa.list_(pa.int64()), "pose": pose, "quality": f64,
            "track": pa.int64()}


def utf8_text(s: str) -> str:
    """``s`` as valid UTF-8 text: a name of bytes that are not UTF-8 (held with surrogate escapes, as Python reads
    such file names) gets those bytes written ``\\xNN``; ``s`` itself when it is valid already."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte gave: its code point, \udXXX
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _utf8_record(rec: dict) -> tuple[dict, str | None]:
    """``rec`` with its top-level strings (``image``, ``error``, extra fields) made UTF-8 (``utf8_text``), and the
    first string that was not (None: all were)."""
    bad = None
    for k, v in rec.items():
        if isinstance(v, str) and utf8_text(v) is not v:
            if bad is None:
                rec, bad = dict(rec), v
            rec[k] = utf8_text(v)
    return rec, bad


def unseekable(path: str | Path) -> str | None:
    """Why Parquet cannot be written to ``path`` (its writer seeks): "a pipe", "a FIFO", "a socket" or "a
    terminal" or another character device that cannot seek; None for a file, a new path, or a device that seeks
    (``/dev/null``: written and discarded)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe or FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if not stat.S_ISCHR(mode):
        return None
    try:  # a character device: /dev/null seeks, a terminal does not (opening it for writing does nothing else)
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None  # the writer reports it, naming the file
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return "a terminal" if os.isatty(fd) else "a device that cannot seek"
    finally:
        os.close(fd)
    return None


def _top_fields(pa) -> dict:
    return {"image": pa.string(), "frame": pa.int64(), "width": pa.int64(), "height": pa.int64(),
            "error": pa.string()}


def _extras(items: Iterable[dict], known: dict, pa) -> dict:
    """Types of the keys of ``items`` that ``known`` lacks, inferred from their first non-null value."""
    found: dict = {}
    for d in items:
        for k, v in d.items():
            if k in known:
                continue
            if v is not None and found.get(k) is None:
                found[k] = pa.infer_type([v])
            else:
                found.setdefault(k, None)
    return {k: (t if t is not None else pa.string()) for k, t in found.items()}


def record_schema(records: list[dict]):
    """The Arrow schema of predict records: the fixed columns plus the extra fields ``records`` carry."""
    pa = import_pyarrow()
    face = _face_fields(pa)
    face.update(_extras((f for r in records for f in r.get("faces") or ()), face, pa))
    top = _top_fields(pa)
    extra_top = _extras(records, {**top, "faces": None}, pa)
    fields = [pa.field(k, top[k]) for k in ("image", "frame", "width", "height")]
    fields.append(pa.field("faces", pa.list_(pa.struct([pa.field(k, t) for k, t in face.items()]))))
    fields.append(pa.field("error", top["error"]))
    fields += [pa.field(k, t) for k, t in extra_top.items()]
    return pa.schema(fields)


def _unknown(records: list[dict], schema) -> set[str]:
    """Keys of ``records`` (top level and per face) that ``schema`` has no column for."""
    face_type = schema.field("faces").type.value_type
    face_names = {face_type.field(i).name for i in range(face_type.num_fields)}
    out = {k for r in records for k in r if k not in schema.names}
    out |= {f"faces.{k}" for r in records for f in r.get("faces") or () for k in f if k not in face_names}
    return out


def records_table(records: list[dict], schema=None):
    """An Arrow table of predict records (one row each), with ``schema`` or the one inferred from them."""
    pa = import_pyarrow()
    records = [_utf8_record(r)[0] for r in records]
    return pa.Table.from_pylist(records, schema=schema if schema is not None else record_schema(records))


class ParquetRecordWriter:
    """Writes predict records to a Parquet file in row groups of ``rows`` records, atomically: the file appears
    when :meth:`close` is called with ``ok=True`` (a failed or killed run leaves no partial file)."""

    def __init__(self, path: str | Path, *, rows: int = 1024, warn: Callable[[str], None] | None = None):
        self.pa = import_pyarrow()
        import pyarrow.parquet as pq

        from facelm._io import stream_path

        self._pq, self.path, self.rows, self.warn = pq, Path(path), rows, warn
        if why := unseekable(self.path):
            raise UsageError(f"{self.path}: Parquet needs a file it can seek in, and this is {why}; write to a "
                             "file and copy it") from None
        try:  # a seekable device (/dev/null) is written straight through, a file via its temporary name
            self._tmp = stream_path(self.path)
        except OSError as e:
            raise UsageError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self._buf: list[dict] = []
        self._writer = None
        self._warned: set[str] = set()
        self._bad_name = False

    def write(self, rec: dict) -> None:
        rec, bad = _utf8_record(rec)
        if bad is not None and not self._bad_name:
            self._bad_name = True
            if self.warn is not None:
                self.warn(f"{self.path}: names that are not valid UTF-8 are stored with their undecodable bytes "
                          f"escaped as \\xNN (Parquet strings are UTF-8): {utf8_text(bad)}")
        self._buf.append(rec)
        if len(self._buf) >= self.rows:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self._tmp, record_schema(self._buf))
        if not self._buf:
            return
        schema = self._writer.schema
        new = _unknown(self._buf, schema) - self._warned
        if new and self.warn is not None:
            self.warn(f"{self.path}: fields first seen after the first row group are left out: {sorted(new)}")
        self._warned |= new
        self._writer.write_table(records_table(self._buf, schema))
        self._buf = []

    def close(self, ok: bool = True) -> None:
        try:
            try:
                if ok:
                    self._flush()
            finally:
                if self._writer is not None:
                    self._writer.close()
        except BaseException:  # a failed or interrupted last write: the temporary file goes
            if self._tmp != self.path:
                self._tmp.unlink(missing_ok=True)
            raise
        if self._tmp == self.path:
            return
        if ok:
            from facelm._io import write_target

            os.replace(self._tmp, write_target(self.path))
        else:
            self._tmp.unlink(missing_ok=True)
