"""``facelm prepare``: turn a raw dataset into a manifest plus a crop cache that training reads fast.

Each face is decoded once and cropped to a square of ``cache_size`` pixels (default 192) around its *face box*
(a square on the landmark bounding box, side ``scheme.face_box_scale * max(w, h)``) enlarged by ``margin``
(default 1.8). The model crops (64 px for CNN-6, 128 px for CNN-7, face box x 1.2) and all their augmentation
(rotation up to 30 degrees, corner perturbation) are then cut from this cache, never from the original image.
Pixels outside the original image are black (``BORDER_CONSTANT``), here and at inference.

Outputs are written so an interrupted run never leaves a manifest that looks complete, and never destroys the
dataset a re-run replaces: the cache, ``prepare.json`` and the manifest are built beside the old ones under
temporary names (``.NAME.PID.tmp``) and renamed into place at the end, the manifest last. Temporaries that a
killed run left are removed by the next run into the same folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm import __version__
from facelm._io import atomic_write_json, check_distinct_paths, sweep_stale_temps, temp_name
from facelm.crops import DEFAULT_CACHE_SIZE, DEFAULT_MARGIN, cache_landmarks  # noqa: F401 - cache_landmarks: re-exported
from facelm.datasets import READERS, detect_format
from facelm.datasets._base import RawFace, ReadIssue
from facelm.errors import DataError, UsageError
from facelm.geometry import crop_matrix, landmark_square, warp_crop
from facelm.imageio import ImageReadError, read_image
from facelm.manifest import CROPS_NAME, MANIFEST_NAME, PREPARE_NAME, CacheRef, Sample, write_manifest
from facelm.schemes import get_scheme

__all__ = ["PrepareOptions", "PrepareResult", "prepare", "default_group", "DEFAULT_CACHE_SIZE", "DEFAULT_MARGIN"]

MAX_CACHE_SIZE = 1024  # 3 MB per face already; larger values are typos (100000 asked for 30 GB per face)
_GROUP_RE = re.compile(r"[_-]?\d+$")


def default_group(image: Path) -> str:
    """Group key for hold-out splits: the image stem without a trailing frame/face number.

    ``Abdel_Aziz_Al-Hakim_02.jpg`` -> ``Abdel_Aziz_Al-Hakim``, so frames of one video (one identity) never land
    on both sides of a train/val split.
    """
    stem = image.stem.split(".")[0]
    return _GROUP_RE.sub("", stem) or stem


@dataclass
class PrepareOptions:
    source: Path | list[Path]  # one or several datasets of the same scheme, merged into one prepared folder
    out: Path
    fmt: str = "auto"
    scheme: str | None = None
    split: str = "auto"  # train | test | auto
    holdout: float = 0.0  # fraction of train groups moved to "val"
    cache_size: int = DEFAULT_CACHE_SIZE
    margin: float = DEFAULT_MARGIN
    workers: int = 0  # 0 = number of cores
    max_outside: float = 0.5  # skip a face whose points lie further outside the image than this x face side
    limit: int = 0  # only the first N faces (0 = all), for quick tries


@dataclass
class PrepareResult:
    summary: dict
    skipped: list[dict] = field(default_factory=list)


def _cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the whole host, where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _holdout_fraction(group: str) -> float:
    h = hashlib.sha1(group.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def _validate_face(face: RawFace, n_expected: int, width: int, height: int, max_outside: float) -> str | None:
    lm = face.landmarks
    if lm.shape != (n_expected, 2):
        return f"{lm.shape[0]} landmarks, scheme {face.scheme} has {n_expected}"
    if not np.all(np.isfinite(lm)):
        return "NaN or infinite landmark coordinates"
    _, side = landmark_square(lm)
    if side < 2:
        return "degenerate landmarks (all points at one place)"
    lo, hi = lm.min(0), lm.max(0)
    out = max(0 - lo[0], 0 - lo[1], hi[0] - (width - 1), hi[1] - (height - 1))
    if out > max_outside * side:
        return f"landmarks up to {out:.0f} px outside the {width}x{height} image"
    return None


def _read_faces(sources: list[Path], formats: list[str], opts: PrepareOptions, warn
                ) -> tuple[list[RawFace], list[str], list[dict]]:
    """(faces, the format each came from, skipped annotations) of every source, up to ``opts.limit`` faces."""
    faces: list[RawFace] = []
    face_fmt: list[str] = []
    skipped: list[dict] = []
    for p, f_fmt in zip(sources, formats):
        try:
            for item in READERS[f_fmt].read(p, opts.scheme):
                if isinstance(item, ReadIssue):
                    skipped.append({"source": item.source, "reason": item.message})
                    if warn:
                        warn(f"{item.source}: {item.message}")
                    continue
                faces.append(item)
                face_fmt.append(f_fmt)
                if opts.limit and len(faces) >= opts.limit:
                    break
        except ValueError as e:
            msg = str(e)  # most readers name the file already (often resolved): say it once
            named = any(msg.startswith(f"{q}:") for q in (p, Path(p).resolve()))
            raise DataError(msg if named else f"{p}: {msg}") from None
        if opts.limit and len(faces) >= opts.limit:
            break
    return faces, face_fmt, skipped


def prepare(opts: PrepareOptions, progress: Callable[[int, int], None] | None = None,
            warn: Callable[[str], None] | None = None) -> PrepareResult:
    """Run ``prepare``; see the module docstring. Raises ``DataError`` when nothing usable is found."""
    t0 = time.perf_counter()
    sources = [Path(p) for p in (opts.source if isinstance(opts.source, (list, tuple)) else [opts.source])]
    if not sources:
        raise UsageError("give at least one SOURCE")
    for p in sources:
        if not p.exists():
            raise DataError(f"{p}: no such file or folder")
    check_distinct_paths("SOURCE", sources)
    src = sources[0] if len(sources) == 1 else Path(", ".join(map(str, sources)))  # for messages
    if opts.split not in ("train", "test", "auto"):
        raise UsageError(f"`split` must be train, test or auto, not {opts.split!r}")
    if not 0.0 <= opts.holdout < 1.0:
        raise UsageError(f"`holdout` must be in [0, 1), not {opts.holdout}")
    if not 32 <= opts.cache_size <= MAX_CACHE_SIZE:
        raise UsageError(f"`cache_size` must be in [32, {MAX_CACHE_SIZE}], got {opts.cache_size}")
    if not (np.isfinite(opts.margin) and opts.margin >= 1.0):
        raise UsageError(f"`margin` must be a finite number >= 1, got {opts.margin}")
    if opts.workers < 0 or opts.limit < 0:
        raise UsageError("`workers` and `limit` must be 0 or more")
    if opts.fmt != "auto" and opts.fmt not in READERS:
        raise UsageError(f"unknown format {opts.fmt!r} (known: {', '.join(sorted(READERS))}, auto)")
    formats: list[str] = []
    for p in sources:
        if opts.fmt == "auto":
            try:
                formats.append(detect_format(p))
            except ValueError as e:
                raise DataError(str(e)) from None
        else:
            formats.append(opts.fmt)
    fmt = formats[0] if len(set(formats)) == 1 else "+".join(formats)
    if opts.scheme is not None:
        try:
            get_scheme(opts.scheme)
        except (KeyError, ValueError) as e:  # ValueError: a scheme file that cannot be read
            raise UsageError(str(e.args[0])) from None

    faces, face_fmt, skipped = _read_faces(sources, formats, opts, warn)
    if not faces:
        raise DataError(f"{src}: no usable faces found as format {fmt!r}"
                        + (f" ({len(skipped)} annotations skipped)" if skipped else ""))
    schemes = sorted({f.scheme for f in faces})
    if len(schemes) > 1:
        raise DataError(f"{src}: faces of several schemes {schemes}; pass `scheme` or prepare them separately")
    scheme = get_scheme(schemes[0])

    out = opts.out
    made = [d for d in (out, *out.parents) if not d.exists()]  # folders this run creates: removed if it fails
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    for name in (CROPS_NAME, MANIFEST_NAME, PREPARE_NAME):
        sweep_stale_temps(out / name)  # what a killed run (kill -9, power loss) left here

    # the new dataset is built beside the old one under temporary names and swapped in at the end (_swap_in): an
    # interrupted or failed re-run leaves the previous complete dataset as it was
    tmp_crops, tmp_prepare, tmp_manifest = (out / temp_name(n, "tmp") for n in (CROPS_NAME, PREPARE_NAME,
                                                                                  MANIFEST_NAME))
    try:
        return _build(opts, out, faces, face_fmt, skipped, sources, src, fmt, scheme, t0, tmp_crops, tmp_prepare,
                      tmp_manifest, progress, warn)
    except BaseException:
        for t in (tmp_crops, tmp_prepare, tmp_manifest):
            t.unlink(missing_ok=True)
        for d in made:  # innermost first; a folder something else wrote into meanwhile stays
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _swap_in(out: Path, staged: list[tuple[Path, str]]) -> None:
    """Rename the staged files over the old ones; the old manifest goes first and the new one comes last, so the
    folder never holds a manifest next to crops it does not describe."""
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for tmp, name in staged:
        os.replace(tmp, out / name)


def _crop_faces(opts, faces, scheme, tmp_crops, skipped, progress, warn
                ) -> tuple[dict[Path, list[int]], list[tuple[int, dict] | None]]:
    """Decode each image once (in parallel), check its faces and warp each usable one into the crop cache (a
    memory map at ``tmp_crops``, one row per face). Returns the faces by image and, per face, ``(row, {width,
    height, matrix})`` or None where it was skipped (the reason appended to ``skipped``)."""
    by_image: dict[Path, list[int]] = defaultdict(list)
    for i, f in enumerate(faces):
        by_image[f.image].append(i)
    images = list(by_image)

    size = opts.cache_size
    crops = np.lib.format.open_memmap(tmp_crops, mode="w+", dtype=np.uint8, shape=(len(faces), size, size, 3))
    results: list[tuple[int, dict] | None] = [None] * len(faces)

    def work(img_path: Path) -> tuple[Path, list[tuple[int, str]]]:
        idxs = by_image[img_path]
        try:
            img = read_image(img_path, exif=False)
        except ImageReadError as e:
            return img_path, [(i, f"unreadable image: {e}") for i in idxs]
        h, w = img.shape[:2]
        bad = []
        for i in idxs:
            face = faces[i]
            reason = _validate_face(face, scheme.num_landmarks, w, h, opts.max_outside)
            if reason:
                bad.append((i, reason))
                continue
            centre, side = landmark_square(face.landmarks, scheme.face_box_scale)
            m = crop_matrix(centre, side * opts.margin, size)
            crops[i] = warp_crop(img, m, size)
            results[i] = (i, {"width": w, "height": h, "matrix": m})
        return img_path, bad

    workers = opts.workers or _cpu_count()
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for img_path, bad in pool.map(work, images):
            for i, reason in bad:
                skipped.append({"source": faces[i].source or str(img_path), "image": str(img_path),
                                "reason": reason})
                if warn:
                    warn(f"{img_path}: {reason}")
            done += 1
            if progress:
                progress(done, len(images))
    crops.flush()
    del crops
    return by_image, results


def _samples(opts, out, faces, face_fmt, results, by_image, scheme, src, warn) -> list[Sample]:
    """The manifest lines of the cropped faces: split (with the grouped hold-out), box, ids, cache rows."""
    samples: list[Sample] = []
    per_image_count: Counter[Path] = Counter()
    groups = {img: default_group(img) for img in by_image}
    sizes = Counter(groups.values())
    if sizes and sizes.most_common(1)[0][1] > max(50, 0.2 * len(groups)):
        # file names like IMG_1234.jpg: stripping the number would put most images in one "identity"
        big = sizes.most_common(1)[0][0]
        if warn:
            warn(f"{src}: {sizes[big]} images share the name stem {big!r}; grouping the hold-out by image instead")
        groups = {img: img.stem for img in by_image}
    for i, f in enumerate(faces):
        r = results[i]
        if r is None:
            continue
        info = r[1]
        k = per_image_count[f.image]
        per_image_count[f.image] += 1
        split = f.split if opts.split == "auto" else opts.split
        split = split or "train"
        group = groups[f.image]
        if split == "train" and opts.holdout > 0 and _holdout_fraction(group) < opts.holdout:
            split = "val"
        if f.box is not None:
            box = [float(v) for v in f.box]
            box_source = f.box_source or face_fmt[i]
        else:
            lo, hi = f.landmarks.min(0), f.landmarks.max(0)
            box = [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]
            box_source = "landmarks"
        rel = os.path.relpath(f.image, out.resolve())
        sid = hashlib.sha1(f"{f.image}|{f.source}".encode()).hexdigest()[:12] + f"-{k}"
        samples.append(Sample(
            id=sid, image=rel, width=info["width"], height=info["height"], box=box, box_source=box_source,
            landmarks=np.round(f.landmarks, 4).tolist(),
            visible=None if f.visible is None else [bool(v) for v in f.visible],
            scheme=scheme.name, split=split, subset=list(f.subset), group=group, source=f.source,
            attrs=f.attrs, cache=CacheRef(index=i, matrix=info["matrix"].tolist()),
        ))
    return samples


def _build(opts, out, faces, face_fmt, skipped, sources, src, fmt, scheme, t0, tmp_crops, tmp_prepare,
           tmp_manifest, progress, warn) -> PrepareResult:
    by_image, results = _crop_faces(opts, faces, scheme, tmp_crops, skipped, progress, warn)
    images = list(by_image)
    size = opts.cache_size
    samples = _samples(opts, out, faces, face_fmt, results, by_image, scheme, src, warn)
    if not samples:
        raise DataError(f"{src}: none of the {len(faces)} faces could be used ({len(skipped)} skipped)")

    seconds = time.perf_counter() - t0
    splits = Counter(s.split for s in samples)
    subsets = Counter(t for s in samples for t in s.subset)
    n_images = len({s.image for s in samples})
    summary = {
        "out": str(out),
        "format": fmt,
        "scheme": scheme.name,
        "faces": len(samples),
        "images": n_images,
        "skipped": len(skipped),
        "splits": dict(sorted(splits.items())),
        "subsets": dict(sorted(subsets.items())),
        "cache": {"file": CROPS_NAME, "size": size, "margin": opts.margin, "rows": len(faces),
                  "bytes": len(faces) * size * size * 3},
        "seconds": round(seconds, 3),
        "images_per_s": round(len(images) / seconds, 1) if seconds > 0 else None,
        "skipped_faces": skipped,
    }
    info = {
        "format_version": 1, "facelm_version": __version__, "source": str(sources[0].resolve()) if len(sources) == 1 else [str(p.resolve()) for p in sources],
        "format": fmt,
        "scheme": scheme.name, "scheme_def": scheme.to_dict(), "crops": CROPS_NAME, "cache_size": size, "margin": opts.margin,
        "face_box": {"kind": "landmark-square", "scale": scheme.face_box_scale},
        "channels": "RGB", "border": "constant-0", "faces": len(samples), "holdout": opts.holdout,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(tmp_prepare, info)
    write_manifest(tmp_manifest, samples)
    # the manifest last: its presence means the folder is complete
    _swap_in(out, [(tmp_crops, CROPS_NAME), (tmp_prepare, PREPARE_NAME), (tmp_manifest, MANIFEST_NAME)])
    return PrepareResult(summary=summary, skipped=skipped)
