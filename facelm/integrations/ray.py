"""Ray Data: facelm as a callable class for ``Dataset.map_batches`` (docs/scale.md)::

    import ray
    from facelm.integrations.ray import FacelmLandmarker

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True, file_extensions=["jpg", "png"])
    ds = ds.map_batches(FacelmLandmarker, batch_size=32, concurrency=8, num_cpus=1)   # 8 CPU actors, 1 core each
    ds.write_parquet("s3://bucket/landmarks/")

Each actor loads the models once (in ``__init__``) and then takes batches. Its output has one row per input row
with the columns of a ``facelm predict`` record (``image``, ``frame``, ``width``, ``height``, ``faces``,
``error``; ``facelm.record_table``), so ``write_parquet`` writes what ``facelm predict --format parquet`` writes.

Inputs: ``read_binary_files`` (column ``bytes``: decoded by facelm exactly as ``facelm predict`` reads a file,
EXIF orientation included, so the landmarks are the same) or ``read_images`` (column ``image``: RGB arrays
decoded by Ray; pass ``mode="RGB"``; no EXIF orientation, and a file Ray cannot decode fails Ray's read, not
facelm's). The name of each row comes from ``include_paths=True`` (column ``path``), else ``"<row N>"``. An image
facelm cannot decode gives a row with ``error`` set and no faces: the job goes on. A batch with neither column, or
whose name column's length differs from its image column's, raises ``KeyError``.

Threads: on the CPU each actor runs one intra-op onnxruntime thread, one batch at a time and one reader thread
(``threads=1``), so give each actor ``num_cpus=1`` and as many actors as cores; on a GPU pass
``device="cuda"`` through ``fn_constructor_kwargs`` and ``num_gpus=1`` (``threads=0`` then lets onnxruntime
choose).

This module does not import Ray: the class is plain Python, so it also runs on a batch dict without Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FacelmLandmarker"]


class FacelmLandmarker:
    """The ``map_batches`` callable. Keywords are those of ``facelm.Landmarker`` (``models=``, ``stages=``,
    ``to_scheme=``, ``boxes=``, ``tta=``, ...), with CPU-actor defaults ``device="cpu"``, ``threads=1``.

    Args:
        path_column: the input column with each row's name (``include_paths=True`` gives ``path``).
        exif: apply the EXIF orientation when decoding ``bytes`` (as ``facelm predict`` does).
    """

    def __init__(self, models: str | Path | None = None, *, device: str = "cpu", threads: int = 1,
                 path_column: str = "path", exif: bool = True, **options: Any):
        from facelm.api import Landmarker

        cpu = device == "cpu"
        options.setdefault("workers", 1 if cpu else 0)
        options.setdefault("streams", 1 if cpu else 0)
        self.landmarker = Landmarker(models, device=device, threads=threads, exif=exif, **options)
        self.path_column, self.exif = path_column, exif
        self._rows = 0

    def _items(self, batch: dict) -> list:
        from facelm.api import _as_rgb
        from facelm.errors import FacelmError
        from facelm.sources import SourceItem

        kind = next((k for k in ("bytes", "image") if k in batch), None)
        if kind is None:
            raise KeyError(f"FacelmLandmarker: the batch has neither a 'bytes' nor an 'image' column "
                           f"(columns: {sorted(batch)}); use ray.data.read_binary_files or read_images")
        column = batch[kind]
        names = batch.get(self.path_column)
        if names is not None and len(names) != len(column):  # rows would get another row's name, or none
            raise KeyError(f"FacelmLandmarker: the batch's {self.path_column!r} column has {len(names)} rows "
                           f"but its {kind!r} column has {len(column)}; each row needs one name and one image")
        items = []
        for i, value in enumerate(column):
            name = str(names[i]) if names is not None else f"<row {self._rows + i}>"
            try:
                data = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value
                rgb, _ = _as_rgb(data, self.exif)
                items.append(SourceItem(name, Path(name), image=rgb))
            except FacelmError as e:
                reason = getattr(e, "reason", None) or str(e)
                items.append(SourceItem(name, Path(name), error=reason))
        self._rows += len(items)
        return items

    def records(self, batch: dict) -> list[dict]:
        """The ``facelm predict`` records of a batch, one per row, in order."""
        return [r.to_dict() for r in self.landmarker._run(self._items(batch))]

    def __call__(self, batch: dict):
        from facelm.record_table import records_table

        return records_table(self.records(batch))
