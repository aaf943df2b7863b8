"""Image reading that copes with what users and datasets really have.

``read_image`` returns an ``(H, W, 3)`` uint8 **RGB** array for 8- and 16-bit, grayscale, RGB and RGBA files.
16-bit samples are scaled to 8 bits (``v / 257``), grayscale is repeated to three channels and alpha is
dropped (the colour channels are kept as stored).

EXIF orientation: dataset annotations refer to the raw pixel array (the InfAnFace set documents this), so
``prepare`` reads with ``exif=False``. User photos (``predict``) are read with ``exif=True``, which applies the
EXIF orientation tag so that landmarks refer to the image as a viewer shows it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["ImageReadError", "read_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp",
                  ".jp2", ".pnm", ".pfm", ".sr", ".ras", ".exr", ".hdr", ".pic")

cv2.setNumThreads(1)  # callers parallelise over images; nested OpenCV threads only oversubscribe the cores


class ImageReadError(Exception):
    """The file is missing, empty, not an image or truncated."""


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    ch = img.shape[2]
    if ch == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if ch == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _check_truncated(data: np.ndarray) -> None:
    """OpenCV decodes truncated JPEG/PNG files silently (grey fill); catch the common cases."""
    head = data[:8].tobytes()
    tail = data[-4096:].tobytes()
    if head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in tail:
        raise ImageReadError("truncated JPEG (no end-of-image marker)")
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        raise ImageReadError("truncated PNG (no IEND chunk)")


def read_image(path: str | Path, *, exif: bool = False) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Args:
        path: the file.
        exif: apply the EXIF orientation tag (for user photos); ``False`` keeps the raw pixel array (datasets).

    Raises:
        ImageReadError: with a short reason (missing, empty, not decodable).
    """
    p = Path(path)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except IsADirectoryError:
        raise ImageReadError("is a directory") from None
    except OSError as e:
        raise ImageReadError(f"cannot read file ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageReadError("empty file (0 bytes)")
    _check_truncated(data)
    flags = cv2.IMREAD_UNCHANGED if not exif else (cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    img = cv2.imdecode(data, flags)
    if img is None:
        raise ImageReadError("not a decodable image (unknown format or corrupt data)")
    if exif and img.ndim == 3 and img.shape[2] == 3:
        # IMREAD_COLOR applies EXIF orientation; it loses alpha (fine) and keeps 16 bit with ANYDEPTH.
        pass
    if img.size == 0 or min(img.shape[:2]) < 1:
        raise ImageReadError("image has no pixels")
    return _to_rgb8(img)
