"""``facelm predict``'s output sink for the ordinary formats (JSONL, CSV, JSON; ``--format parquet`` and
``--resume`` go through ``cli/_predict_scale``): stdout, or ``-o FILE`` written through a temporary file that is
renamed into place when the run ends and removed when it fails or is interrupted."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from enum import Enum
from pathlib import Path

from facelm.cli._common import dumps
from facelm.errors import UsageError

__all__ = ["Fmt"]


class Fmt(str, Enum):
    jsonl = "jsonl"
    csv = "csv"
    json = "json"
    parquet = "parquet"


_CSV_HEAD = ["image", "frame", "face", "box_x1", "box_y1", "box_x2", "box_y2", "score", "angle"]
# after the landmarks, so that readers of the older column order (landmarks right after `angle`) keep working
_CSV_TAIL = ["width", "height", "error", "quality", "yaw", "pitch", "roll", "track"]


class _CsvLines:
    """``csv.writer`` rows ending in ``"\n"`` in which every field holding a ``\r`` or ``\n`` is quoted (a writer
    with ``lineterminator="\n"`` leaves a lone ``\r`` bare, and a reader splits the row there)."""

    def __init__(self, fh):
        import csv

        self._fh, self._buf = fh, io.StringIO()
        self._w = csv.writer(self._buf, lineterminator="\r\n")  # quotes the fields with \r or \n

    def writerow(self, row: list) -> None:
        self._buf.seek(0)
        self._buf.truncate()
        self._w.writerow(row)
        self._fh.write(self._buf.getvalue()[:-2] + "\n")


class _Sink:
    """stdout (or ``-o FILE``, opened lazily) in the chosen format."""

    def __init__(self, fmt: Fmt, output: str, num_landmarks: int, point_ids: list[int] | None = None):
        self.fmt, self.output, self.n = fmt, output, num_landmarks
        self.ids = point_ids if point_ids is not None else list(range(num_landmarks))  # CSV columns x{id}, y{id}
        self._fh = None
        self._tmp: Path | None = None
        self._json: list = []
        self._header = False

    def _file(self):
        if self._fh is None:
            if self.output in ("-", ""):
                self._fh = sys.stdout
                enc = (getattr(self._fh, "encoding", None) or "").lower().replace("-", "")
                if (getattr(self._fh, "errors", None) == "strict" or enc != "utf8") \
                        and hasattr(self._fh, "reconfigure"):
                    # data goes out as UTF-8 whatever the locale (an ASCII stdout cannot hold "é"), and a file
                    # name that is not UTF-8 as its bytes, as in a file, not as a UnicodeEncodeError
                    self._fh.reconfigure(encoding="utf-8", errors="surrogateescape")
            else:
                from facelm._io import stream_path

                try:  # a device or FIFO (/dev/stdout) is written straight through, a file via its temporary name
                    self._tmp = stream_path(Path(self.output))
                    # surrogateescape: a file name that is not UTF-8 goes out as its bytes, as on stdout
                    self._fh = open(  # noqa: SIM115 - opened lazily, closed in close()
                        self._tmp, "w", encoding="utf-8", errors="surrogateescape", newline="")
                except OSError as e:
                    raise self._failed(e) from None
        return self._fh

    def _csv_rows(self, rec: dict) -> list[list]:
        base = [rec["image"], rec.get("frame", "")]
        if not rec["faces"]:
            # face, box_x1..box_y2, score, angle, the 2n coordinates, quality, pose and track stay empty
            return [base + [""] * (len(_CSV_HEAD) - 2 + 2 * self.n) + [rec["width"], rec["height"],
                                                                        rec["error"] or ""] + [""] * 5]
        rows = []
        for i, f in enumerate(rec["faces"]):
            pts = [v for p in f["landmarks"] for v in p]
            pose = f.get("pose") or {}
            extra = [f.get("quality"), pose.get("yaw"), pose.get("pitch"), pose.get("roll"), f.get("track")]
            rows.append(base + [i, *f["box"], f["score"], f["angle"], *pts, rec["width"], rec["height"], "", *extra])
        return rows

    def _failed(self, e: OSError) -> UsageError:
        return UsageError(f"--output {self.output}: cannot write ({e.strerror or e})")

    def write(self, rec: dict) -> None:
        if self.fmt == Fmt.json:
            self._json.append(rec)
            return
        fh = self._file()
        try:
            self._write(fh, rec)
        except OSError as e:  # a full disk: one line, and close(ok=False) removes the temporary file
            raise self._failed(e) from None

    def _write(self, fh, rec: dict) -> None:
        if self.fmt == Fmt.jsonl:
            fh.write(dumps(rec) + "\n")
        else:
            w = _CsvLines(fh)
            if not self._header:
                pts = [f"{a}{k}" for k in self.ids for a in ("x", "y")]
                w.writerow(_CSV_HEAD + pts + _CSV_TAIL)
                self._header = True
            for row in self._csv_rows(rec):
                w.writerow(["" if v is None else v for v in row])
        fh.flush()

    def close(self, ok: bool = True) -> None:
        failure = None
        try:
            if self.fmt == Fmt.json and ok:
                self._file().write(dumps(self._json) + "\n")
            elif self.fmt == Fmt.csv and not self._header and ok:
                self.write_header_only()
        except OSError as e:
            failure = e
        except BaseException:  # Ctrl-C during the final write: the half-written temporary file goes
            self._fh, fh = None, self._fh
            if fh is not None and fh is not sys.stdout:
                with contextlib.suppress(OSError):
                    fh.close()
                if self._tmp != Path(self.output):
                    self._tmp.unlink(missing_ok=True)
            raise
        if self._fh is not None and self._fh is not sys.stdout:
            try:
                self._fh.close()
            except OSError as e:
                failure = failure or e
            if self._tmp == Path(self.output):  # written straight through: nothing to rename or remove
                pass
            elif ok and failure is None:
                from facelm._io import write_target

                os.replace(self._tmp, write_target(self.output))
            else:
                self._tmp.unlink(missing_ok=True)
        elif self._fh is sys.stdout:
            sys.stdout.flush()
        if ok and failure is not None:
            raise self._failed(failure)

    def write_header_only(self) -> None:
        pts = [f"{a}{k}" for k in self.ids for a in ("x", "y")]
        _CsvLines(self._file()).writerow(_CSV_HEAD + pts + _CSV_TAIL)
