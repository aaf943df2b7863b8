"""``facelm predict`` records as Arrow tables and Parquet files (``--format parquet``, the Ray integration).

One row per image (or video frame), the same fields as a JSONL record (docs/predict.md), with fixed types:

* ``image``: string; ``frame``: int64 (null for images); ``width``, ``height``: int64 (null for failed images);
* ``faces``: list of struct: ``box`` list<double> (4), ``score`` double, ``angle`` double, ``landmarks``
  list<list<double>> (L x 2), ``scheme`` string, ``points`` list<int64> (only after a partial ``--to-scheme``);
* ``error``: string (null when the image was read).

Fields that a record carries beyond these (new per-face fields, e.g. a pose or quality score) are kept: their types
are inferred from the first non-null value among the records of the first row group (a field that is null
throughout them becomes a string column). A field first seen after that is left out, with one warning.

pyarrow is an optional dependency: ``pip install 'facelm[parquet]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from facelm.errors import UsageError

__all__ = ["ParquetRecordWriter", "import_pyarrow", "record_schema", "records_table"]

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
    f64 = pa.float64()
    return {"box": pa.list_(f64), "score": f64, "angle": f64, "landmarks": pa.list_(pa.list_(f64)),
            "scheme": pa.string(), "points": pa.list_(pa.int64())}


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
    return pa.Table.from_pylist(records, schema=schema if schema is not None else record_schema(records))


class ParquetRecordWriter:
    """Writes predict records to a Parquet file in row groups of ``rows`` records, atomically: the file appears
    when :meth:`close` is called with ``ok=True`` (a failed or killed run leaves no partial file)."""

    def __init__(self, path: str | Path, *, rows: int = 1024, warn: Callable[[str], None] | None = None):
        self.pa = import_pyarrow()
        import pyarrow.parquet as pq

        from facelm._io import stream_path

        self._pq, self.path, self.rows, self.warn = pq, Path(path), rows, warn
        try:  # a device or FIFO (/dev/stdout) is written straight through, a file via its temporary name
            self._tmp = stream_path(self.path)
        except OSError as e:
            raise UsageError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self._buf: list[dict] = []
        self._writer = None
        self._warned: set[str] = set()

    def write(self, rec: dict) -> None:
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
