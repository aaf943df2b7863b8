"""YuNet face detection (libfacedetection.train, Apache-2.0) through onnxruntime, and the ``yuface`` fallback.

facelm ships one YuNet file, ``yunet_s_dynamic.onnx`` (238 KB, byte for byte as published, with its Apache-2.0
``LICENSE`` and a ``NOTICE`` naming its source commit), in ``models/detectors/`` of a checkout and
``facelm/_models/detectors/`` of an installed wheel (:func:`facelm._paths.bundled_detector_dir`), so ``predict``
works offline on a machine that has nothing but facelm.

Model file search (:func:`find_yunet_model`), first hit wins:

1. explicit: ``--detector-model PATH`` (the ``path`` argument), else ``$FACELM_DETECTOR_MODEL``; an existing file
   is used as it is (any YuNet export, no checksum). A bare name of a known file (:data:`DETECTOR_FILES`, e.g.
   ``yunet_n_dynamic.onnx``) that is not a file in the working directory is looked up as in 2-4 under that name;
   anything else that does not exist is an error;
2. the bundled file (``yunet_s_dynamic.onnx``), its sha256 checked;
3. the user cache ``$XDG_CACHE_HOME/facelm/NAME`` (default ``~/.cache/facelm/``), its sha256 checked;

then (:func:`facelm.detectors.create_detector`) the ``yuface`` package when it is installed and nothing explicit
was asked for, and finally

4. a download of the official file from libfacedetection.train at :data:`YUNET_COMMIT` into the cache
   (:func:`download_yunet`), checked against its sha256 before it is written. Offline, the error says what to do.

A bundled or cached file whose sha256 does not match is an error naming the file (exit code 4), never silently
replaced.

Decoding follows libfacedetection.train's ``yunet_s_dynamic.onnx`` (its README, kept with the development copies
in ``../shared/models``): BGR 0-255 input padded (right/bottom, zeros) to multiples of 32; per stride 8/16/32 and
prior (column c, row r): score = sqrt(cls * obj), centre = ((c + dx) s, (r + dy) s), size = (exp(dw) s,
exp(dh) s), five key points; score threshold, greedy NMS, top-k.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
from pathlib import Path

import cv2
import numpy as np

from facelm._io import sha256_file
from facelm._paths import BUNDLED_DETECTOR, DETECTOR_ENV, bundled_detector_dir, cache_dir
from facelm.detectors.base import (
    MAX_DETECT_SIDE,
    MIN_RETRY_SIDE,
    PAD_FRACTION,
    Detection,
    FaceDetector,
    detect_with_retries,
    downscale_for_detection,
    nms,
    scale_back,
)
from facelm.errors import ModelError

__all__ = [
    "DETECTOR_FILES",
    "YUNET_FILE",
    "YUNET_SHA256",
    "YUNET_URL",
    "DetectorUnavailable",
    "YuFaceDetector",
    "YuNetDetector",
    "bundled_model",
    "cache_dir",
    "check_sha256",
    "detector_url",
    "download_yunet",
    "find_yunet_model",
    "requested_file",
    "yuface_available",
]

YUNET_FILE = BUNDLED_DETECTOR  # "yunet_s_dynamic.onnx": the bundled one, and the default
YUNET_COMMIT = "0047ac24afb1a50a0c6105001c89d1b5b805dbf1"
_UPSTREAM = f"https://raw.githubusercontent.com/ShiqiYu/libfacedetection.train/{YUNET_COMMIT}/"

#: YuNet files facelm knows by name: file name -> (path in libfacedetection.train at YUNET_COMMIT, sha256).
#: Checksums as recorded for the copies in ../shared/models (bytes unchanged, some files renamed).
DETECTOR_FILES: dict[str, tuple[str, str]] = {
    "yunet_s_dynamic.onnx": ("onnx/yunet_s_dynamic.onnx",
                             "daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3"),
    "yunet_n_dynamic.onnx": ("onnx/yunet_n_dynamic.onnx",
                             "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12"),
    "yunet_s_640x640.onnx": ("onnx/yunet_s_640_640.onnx",
                             "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"),
}
YUNET_URL = _UPSTREAM + DETECTOR_FILES[YUNET_FILE][0]
YUNET_SHA256 = DETECTOR_FILES[YUNET_FILE][1]
ENV_MODEL = DETECTOR_ENV
STRIDES = (8, 16, 32)


class DetectorUnavailable(ModelError):
    """No detector could be set up (no model file, offline, no yuface), or a shipped/cached file is corrupt."""


def detector_url(name: str = YUNET_FILE) -> str:
    """The official download address of a known detector file (:data:`DETECTOR_FILES`)."""
    return _UPSTREAM + DETECTOR_FILES[name][0]


def bundled_model() -> Path | None:
    """The detector file shipped with facelm (not yet checksum-checked), or None when this install lacks it."""
    p = bundled_detector_dir() / YUNET_FILE
    return p if p.is_file() else None


def check_sha256(path: Path, expected: str, remedy: str) -> Path:
    """``path`` when its sha256 is ``expected``; else ``DetectorUnavailable`` (exit 4) naming the file."""
    try:
        got = sha256_file(path)
    except OSError as e:
        raise DetectorUnavailable(f"{path}: cannot read the face detector model ({e.strerror or e}); {remedy}"
                                  ) from None
    if got != expected:
        raise DetectorUnavailable(f"{path}: sha256 {got} does not match the expected {expected} (a corrupt or "
                                  f"altered copy); {remedy}")
    return path


def _local_copy(name: str) -> Path | None:
    """The bundled file (for the default name), else the cached one, checksum-checked; None when neither is here."""
    sha = DETECTOR_FILES[name][1]
    if name == YUNET_FILE and (b := bundled_model()) is not None:
        return check_sha256(b, sha, "reinstall facelm, or pass `detector_model` PATH to a good copy")
    cached = cache_dir() / name
    if cached.is_file():
        return check_sha256(cached, sha, "delete it to download it again, or pass `detector_model` PATH")
    return None


def _explicit() -> tuple[str, str] | None:
    env = os.environ.get(ENV_MODEL)
    return (env, f"${ENV_MODEL}={env}") if env else None


def find_yunet_model(path: str | Path | None = None) -> Path | None:
    """The YuNet ONNX file to use without downloading (see the module docstring), or None (download
    :func:`requested_file`).

    Raises:
        DetectorUnavailable: an explicitly given path (argument or environment) does not exist and is not the name
            of a known file; a bundled or cached file fails its checksum.
    """
    spec = (str(path), f"`detector_model` {path}") if path else _explicit()
    if spec is not None:
        value, where = spec
        p = Path(value).expanduser()
        if p.is_file():
            return p
        if value in DETECTOR_FILES:
            return _local_copy(value)
        raise DetectorUnavailable(f"{where}: no such file (known names that facelm finds or downloads itself: "
                                  f"{', '.join(DETECTOR_FILES)})")
    return _local_copy(YUNET_FILE)


def requested_file(path: str | Path | None = None) -> str:
    """The known file name a download should fetch for this ``--detector-model`` (default: the bundled one's)."""
    spec = str(path) if path else (_explicit() or ("", ""))[0]
    return spec if spec in DETECTOR_FILES else YUNET_FILE


def _offline_message(reason: str, name: str = YUNET_FILE) -> str:
    dest = cache_dir() / name
    url, sha = detector_url(name), DETECTOR_FILES[name][1]
    bundled = ("" if name != YUNET_FILE else
               f"this install lacks its bundled copy ({bundled_detector_dir() / YUNET_FILE}), ")
    return (f"no face detector available: {bundled}{name} is not on this machine and downloading it failed "
            f"({reason}). Offline, either pass `detector_model` PATH (or set ${ENV_MODEL}) to a copy of "
            f"{name}, or put the file at {dest} (download {url} , sha256 {sha}), "
            "or `pip install yuface`; for images that are already face crops use `no_detect`, or give boxes "
            "with `boxes` FILE")


def _fetch(url: str, timeout: float) -> bytes:
    import urllib.request  # here: its import (http, email, ssl) is a tenth of a second every predict pays

    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def download_yunet(dest_dir: Path | None = None, *, name: str = YUNET_FILE, url: str | None = None,
                   sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Download a known YuNet file (default the bundled one's name) into the cache, atomically, and check its
    sha256 before writing it.

    Raises:
        DetectorUnavailable: offline, HTTP error or checksum mismatch (with what to do instead).
    """
    if name not in DETECTOR_FILES:
        raise DetectorUnavailable(f"{name}: not a detector file facelm knows how to download (known: "
                                  f"{', '.join(DETECTOR_FILES)}); pass `detector_model` PATH")
    url = url or detector_url(name)
    sha256 = sha256 or DETECTOR_FILES[name][1]
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest = dest_dir / name
    try:
        data = _fetch(url, timeout)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DetectorUnavailable(_offline_message(f"{type(e).__name__}: {reason}", name)) from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise DetectorUnavailable(_offline_message(f"checksum mismatch: got sha256 {got}, expected {sha256}", name))
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=dest_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError as e:
        raise DetectorUnavailable(f"cannot write the detector model to {dest} ({e.strerror or e}); "
                                  "pass `detector_model` PATH") from None
    return dest


def yuface_available() -> bool:
    try:
        import yuface  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken binary wheel raises ImportError/OSError
        return False
    return True


class YuNetDetector(FaceDetector):
    """YuNet through onnxruntime; thread-safe (onnxruntime sessions may be run from several threads).

    Args:
        model: path of a ``yunet_*_dynamic.onnx`` (or a fixed-size YuNet file; inputs are resized then).
        score_threshold: minimum sqrt(cls * obj) score (0.6 like OpenCV's default).
        nms_threshold: IoU above which the weaker of two boxes is dropped.
        top_k: at most this many faces per image (best first).
        max_side: images with a longer side above this are shrunk for detection (boxes mapped back).
        min_retry_side: close-ups: the image is also searched at half size, quarter size, ... while its shorter
            side stays at least this (0 = never; ``facelm.detectors.base.detect_with_retries``).
        pad_fraction: a face at the image's edge, or no face: one more look inside a black border of this fraction
            of the side (0 = never).
        providers, threads: onnxruntime settings (``facelm.runtime.session``).
    """

    name = "yunet"
    live = True

    def __init__(self, model: str | Path, *, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 750, max_side: int = MAX_DETECT_SIDE, providers: list | None = None,
                 threads: int = 0, min_retry_side: int = MIN_RETRY_SIDE,
                 pad_fraction: float = PAD_FRACTION):
        from facelm.ort import create_session

        self.model = Path(model)
        self.session = create_session(self.model, providers or ["CPUExecutionProvider"], threads)
        inputs = self.session.get_inputs()
        outs = {o.name for o in self.session.get_outputs()}
        need = {f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES}
        if len(inputs) != 1 or not need <= outs:
            raise ModelError(f"{self.model}: not a YuNet model (expects outputs {sorted(need)})")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.fixed = tuple(shape[2:]) if all(isinstance(v, int) for v in shape[2:]) else None
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.max_side = max_side
        self.min_retry_side = min_retry_side
        self.pad_fraction = pad_fraction
        self.providers = list(self.session.get_providers())

    def describe(self) -> str:
        return f"yunet ({self.model}, {', '.join(self.providers)})"

    def _prepare(self, bgr: np.ndarray) -> tuple[np.ndarray, float, float]:
        h, w = bgr.shape[:2]
        if self.fixed is not None:
            fh, fw = self.fixed
            resized = cv2.resize(bgr, (fw, fh), interpolation=cv2.INTER_AREA if fw < w else cv2.INTER_LINEAR)
            return resized, fw / w, fh / h
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        if (ph, pw) != (h, w):
            bgr = cv2.copyMakeBorder(bgr, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0)
        return bgr, 1.0, 1.0

    def raw(self, bgr: np.ndarray) -> np.ndarray:
        """Detections ``(M, 15)`` in the ``cv2.FaceDetectorYN`` layout for one BGR uint8 image (no resizing)."""
        h, w = bgr.shape[:2]
        inp, sx, sy = self._prepare(bgr)
        x = np.ascontiguousarray(inp.transpose(2, 0, 1)[None], dtype=np.float32)
        names = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES]
        outs = dict(zip(names, self.session.run(names, {self.input_name: x})))
        iw = inp.shape[1]
        rows = []
        for s in STRIDES:
            cols_n = iw // s
            cls = np.clip(outs[f"cls_{s}"].reshape(-1), 0, 1)
            obj = np.clip(outs[f"obj_{s}"].reshape(-1), 0, 1)
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score >= self.score_threshold)
            if keep.size == 0:
                continue
            c = (keep % cols_n).astype(np.float64)
            r = (keep // cols_n).astype(np.float64)
            bb = outs[f"bbox_{s}"].reshape(-1, 4)[keep].astype(np.float64)
            kp = outs[f"kps_{s}"].reshape(-1, 10)[keep].astype(np.float64)
            cx, cy = (c + bb[:, 0]) * s, (r + bb[:, 1]) * s
            bw, bh = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            kx = (c[:, None] + kp[:, 0::2]) * s
            ky = (r[:, None] + kp[:, 1::2]) * s
            k = np.stack([kx, ky], -1).reshape(-1, 10)
            rows.append(np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, k, score[keep]]))
        if not rows:
            return np.zeros((0, 15))
        det = np.concatenate(rows)
        if self.fixed is not None:
            det[:, [0, 2, 4, 6, 8, 10, 12]] /= sx
            det[:, [1, 3, 5, 7, 9, 11, 13]] /= sy
        # drop detections centred in the padding
        ctr_x, ctr_y = det[:, 0] + det[:, 2] / 2, det[:, 1] + det[:, 3] / 2
        det = det[(ctr_x < w) & (ctr_y < h)]
        boxes = np.column_stack([det[:, 0], det[:, 1], det[:, 0] + det[:, 2], det[:, 1] + det[:, 3]])
        keep = nms(boxes, det[:, 14], self.nms_threshold, self.top_k)
        return det[keep]

    def detect(self, image: np.ndarray, name: str | None = None, frame: int | None = None) -> list[Detection]:
        return detect_with_retries(self._detect_at, image, self.max_side, self.min_retry_side, self.nms_threshold,
                                   self.pad_fraction)

    def detect_once(self, image: np.ndarray) -> list[Detection]:
        """One look at the image as it is (shrunk to ``max_side``): no smaller sizes, no border (the orientation
        search compares scores of such looks)."""
        return self._detect_at(*downscale_for_detection(image, self.max_side))

    def _detect_at(self, small: np.ndarray, f: float) -> list[Detection]:
        det = self.raw(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        out = []
        for d in det:
            x, y, w, h = d[:4]
            box = scale_back(np.array([x, y, x + w, y + h]), f)
            kps = scale_back(d[4:14].reshape(5, 2), f)
            out.append(Detection(box=box, score=float(d[14]), keypoints=kps, kind="detector"))
        return out


class YuFaceDetector(FaceDetector):
    """The ``yuface`` package (libfacedetection's C++ YuNet; zero configuration, CPU only).

    Its boxes are integers and it warns on images above 960 px, so images are shrunk to ``max_side`` 960 first.
    Its box convention is the same network family as :class:`YuNetDetector`, but it keeps its own box map key.
    """

    name = "yuface"
    live = True

    def __init__(self, score_threshold: float = 0.6, max_side: int = 960, min_retry_side: int = MIN_RETRY_SIDE,
                 pad_fraction: float = PAD_FRACTION):
        try:
            import yuface
        except Exception as e:  # noqa: BLE001
            raise DetectorUnavailable(f"the yuface package is not usable ({e}); `pip install yuface`") from None
        self._detect = yuface.detect
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.min_retry_side = min_retry_side
        self.pad_fraction = pad_fraction

    def describe(self) -> str:
        return "yuface (libfacedetection, CPU)"

    def detect(self, image: np.ndarray, name: str | None = None, frame: int | None = None) -> list[Detection]:
        return detect_with_retries(self._detect_at, image, self.max_side, self.min_retry_side, pad=self.pad_fraction)

    def detect_once(self, image: np.ndarray) -> list[Detection]:
        """One look at the image as it is (shrunk to ``max_side``): no smaller sizes, no border."""
        return self._detect_at(*downscale_for_detection(image, self.max_side))

    def _detect_at(self, small: np.ndarray, f: float) -> list[Detection]:
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        confs, boxes, kps = self._detect(bgr, conf=self.score_threshold)
        out = []
        for c, b, k in zip(confs, boxes, kps):
            x, y, w, h = (float(v) for v in b)
            box = scale_back(np.array([x, y, x + w, y + h]), f)
            out.append(Detection(box=box, score=float(c) / 100.0,
                                 keypoints=scale_back(np.asarray(k, dtype=np.float64).reshape(5, 2), f)))
        return out
