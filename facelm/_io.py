"""Small file helpers: atomic writes so an interrupted command never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_json_or_toml", "json_clean", "atomic_path", "atomic_write", "atomic_write_text", "atomic_write_json",
           "sha256_file", "temp_name", "temp_stem", "sweep_stale_temps", "pid_alive", "special_target", "make_temp",
           "stream_path"]



def read_json_or_toml(path: str | Path) -> dict:
    """The document of a ``.toml`` file (by suffix) or else a JSON file. Raises OSError or ValueError (both
    ``tomllib.TOMLDecodeError`` and ``json.JSONDecodeError`` are ValueErrors); callers name the file."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    return tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)

#: the most bytes of a target's name that its temporary names hold: a name of this many bytes or more is
#: shortened (``temp_stem``), so ``.NAME.PID.<8 random><.tmp + a suffix of up to TEMP_SUFFIX_MAX>`` fits the
#: 255 bytes a file name may have
TEMP_STEM_MAX = 200
#: the longest suffix (bytes) ``atomic_path`` keeps on its temporary name (for writers that read it, savefig)
TEMP_SUFFIX_MAX = 24
_HASH_HEX = 16


def _nbytes(s: str) -> int:
    return len(os.fsencode(s))


def temp_stem(name: str) -> str:
    """The NAME part of the temporary names of a target named ``name``: ``name`` itself when it is shorter than
    ``TEMP_STEM_MAX`` bytes, else exactly that many bytes: its start (cut between characters, padded with ``~``),
    ``~`` and a hash of the whole name. A shortened stem is never a whole stem (those are shorter), and two long
    names share one only with the same start and the same 64-bit hash."""
    raw = os.fsencode(name)
    if len(raw) < TEMP_STEM_MAX:
        return name
    keep, n = [], 0
    room = TEMP_STEM_MAX - 1 - _HASH_HEX
    for ch in name:  # whole characters (a surrogate escape is one byte)
        k = _nbytes(ch)
        if n + k > room:
            break
        keep.append(ch)
        n += k
    return "".join(keep) + "~" * (room - n + 1) + hashlib.blake2b(raw, digest_size=_HASH_HEX // 2).hexdigest()


def temp_name(path: str | Path, suffix: str = "") -> str:
    """The prefix of a temporary name next to ``path``: ``.NAME.PID.`` (``sweep_stale_temps`` reads the PID), with
    NAME shortened for a long name (``temp_stem``) so that the whole name stays within 255 bytes."""
    return f".{temp_stem(Path(path).name)}.{os.getpid()}.{suffix}"


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` still there? (Another user's process counts as alive.)"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


#: what follows ``.NAME.`` in a temporary name: the PID, then ``tmp`` (``stream_path``) or mkstemp's / mkdtemp's
#: 8 random characters (after ``int8-`` for export's work folder) and ``.tmp``, perhaps with the target's suffix
_TEMP_TAIL = re.compile(r"(\d+)\.(?:tmp|(?:int8-)?[a-z0-9_]{8}\.tmp(?:\.[^.]*)?)")


def sweep_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary files and folders for ``path`` that a dead process left (``kill -9``, power loss).

    Temporaries are named ``.NAME.PID.tmp`` or ``.NAME.PID.[int8-]<8 random>.tmp[.SUFFIX]`` next to ``path``
    (``temp_name``; NAME shortened for a long name, ``temp_stem``); those of a live process (this one included)
    are kept. Another target's temporaries never match (``.a.5.PID.tmp`` is not one of ``a``'s). Returns what
    was removed.
    """
    import shutil

    path = Path(path)
    folder, head = path.parent, f".{temp_stem(path.name)}."
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_TAIL.fullmatch(e.name[len(head):]) if e.name.startswith(head) else None
        if m is None:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def special_target(path: str | Path) -> bool:
    """Does ``path`` name an existing non-regular file, such as ``/dev/null``, ``/dev/stdout`` or a FIFO? Such a
    target is written straight through: renaming a temporary file over it would replace the device (or the link
    to it) with a regular file."""
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except (OSError, ValueError):
        return False


def cannot_write_into(folder: str | Path) -> str | None:
    """Why nothing can be created in ``folder`` (read-only, no permission), or None: a probe folder is made and
    removed at once (``os.access`` does not see read-only mounts, nor the kernel's own file systems as root)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".facelm-probe.{os.getpid()}.", suffix=".tmp", dir=folder))
    except OSError as e:
        return e.strerror or str(e)
    return None


def check_folder_creatable(label: str, folder: str | Path, shown: str | Path | None = None) -> None:
    """``UsageError`` "LABEL SHOWN: why" before any work when ``folder`` cannot be made or written: it or a folder
    above it is a file, or the nearest existing one cannot be written into (``cannot_write_into``). ``shown``: the
    path the user gave (an output file in ``folder``), default ``folder``."""
    from facelm.errors import UsageError

    folder = Path(folder)
    shown = folder if shown is None else shown
    for d in (folder, *folder.parents):
        if d.exists() and not d.is_dir():
            raise UsageError(f"{label} {shown}: {'is not a folder' if d == folder else f'{d} is not a folder'}")
        if d.exists():
            if why := cannot_write_into(d):
                raise UsageError(f"{label} {shown}: cannot write into {d} ({why})")
            return


def check_distinct_paths(label: str, paths) -> None:
    """``UsageError`` "LABEL P is given twice (as FIRST)" when two of ``paths`` name the same file or folder (its
    contents would be read, counted and trained on twice)."""
    from facelm.errors import UsageError

    seen: dict[Path, str] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            first = seen[key]
            raise UsageError(f"{label} {p} is given twice" + ("" if first == str(p) else f" (as {first})"))
        seen[key] = str(p)


def write_target(path: str | Path) -> Path:
    """The file that writing ``path`` changes: a symbolic link's target (followed to its end), so a finished
    temporary file renamed over it keeps the link, as ``>`` in a shell does; else ``path`` itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def stream_path(path: Path) -> Path:
    """Where a writer that streams into ``path`` writes: ``path`` itself when it is a device or FIFO
    (``special_target``), else its temporary name next to it (``temp_name``; renamed over ``path`` when complete),
    the folder created and what a killed run left there swept. ``OSError`` when the folder cannot be made."""
    if special_target(path):
        return path
    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    return path.with_name(temp_name(path, "tmp"))


def make_temp(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """``tempfile.mkstemp`` next to ``path`` (its folder created), named for ``sweep_stale_temps`` after sweeping
    what a killed run left; a folder that cannot be created or written is ``UsageError`` naming ``path``."""
    from facelm.errors import UsageError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temps(path)
        return tempfile.mkstemp(prefix=temp_name(path), suffix=suffix, dir=path.parent)
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kw) -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it over ``path`` only if the block succeeds. A device or FIFO
    (``special_target``) is written straight through."""
    path = Path(path)
    if special_target(path):
        with open(path, mode, **kw) as f:
            yield f
        return
    path = write_target(path)
    fd, tmp = make_temp(path)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix) for writers that want a file name (torch.save, onnx.save,
    savefig); renamed over ``path`` only if the block succeeds, removed otherwise."""
    path = Path(path)
    if special_target(path):  # a device or FIFO: the writer writes to it
        yield path
        return
    path = write_target(path)
    # ".NAME.PID.XXXX.tmp.SUFFIX": writers that pick the format from the suffix (savefig) still see it (a suffix
    # longer than TEMP_SUFFIX_MAX bytes is no format's, and is left out so the name fits)
    suffix = path.suffix if _nbytes(path.suffix) <= TEMP_SUFFIX_MAX else ""
    fd, tmp = make_temp(path, ".tmp" + suffix)
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_clean(obj):
    """Replace NaN/inf floats by None (JSON has no NaN; strict parsers reject the literals)."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    return obj


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | Path, obj, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(json_clean(obj), indent=indent, allow_nan=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever a library prints to stdout (Python ``print`` and C/C++ writes to fd 1) to stderr for the
    duration of the block: the CLI's stdout carries data only."""
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        try:
            sys.__stdout__.flush()
            saved = os.dup(1)
        except (AttributeError, OSError, ValueError):
            yield
            return
        try:
            os.dup2(2, 1)
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.__stdout__.flush()
            os.dup2(saved, 1)
            os.close(saved)
