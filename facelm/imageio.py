"""Image reading that copes with what users and datasets really have.

``read_image`` returns an ``(H, W, 3)`` uint8 **RGB** array for 8- and 16-bit, grayscale, RGB and RGBA files.
16-bit samples are scaled to 8 bits (``v / 257``), grayscale is repeated to three channels and alpha is
dropped (the colour channels are kept as stored).

EXIF orientation: dataset annotations refer to the raw pixel array (the InfAnFace set documents this), so
``prepare`` reads with ``exif=False``. User photos (``predict``) are read with ``exif=True``, which applies the
EXIF orientation tag so that landmarks refer to the image as a viewer shows it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np

__all__ = ["ImageReadError", "decode_image", "read_image", "IMAGE_SUFFIXES"]

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


def _jpeg_has_eoi(buf: bytes) -> bool:
    """Is there an end-of-image marker after the first start-of-scan? (Data after it is allowed.)

    Walks the header segments (so an EXIF thumbnail's own end marker does not count), then searches the
    entropy-coded data, where ``FF D9`` can only be the end marker (byte stuffing).
    """
    pos, n = 2, len(buf)
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            return True  # a layout this walk does not follow: leave the verdict to the decoder
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:  # start of scan
            return buf.find(b"\xff\xd9", pos) != -1
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(buf[pos + 2:pos + 4], "big")
    return False  # the data ends inside the headers


def _png_has_iend(buf: bytes) -> bool:
    """Does the chunk sequence reach an IEND chunk? (Data after it is allowed.)"""
    pos, n = 8, len(buf)
    while pos + 8 <= n:
        if buf[pos + 4:pos + 8] == b"IEND":
            return True
        pos += 12 + int.from_bytes(buf[pos:pos + 4], "big")
    return False


def _check_truncated(data: np.ndarray) -> None:
    """OpenCV decodes truncated JPEG/PNG files silently (grey fill); catch the common cases.

    The end marker is looked for in the last 4 KiB first (fast); only when it is not there is the file's
    structure walked, so valid files with data appended (phone "motion photos", padding) are not rejected.
    """
    head = data[:8].tobytes()
    tail = data[-4096:].tobytes()
    if head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in tail and not _jpeg_has_eoi(data.tobytes()):
        raise ImageReadError("truncated JPEG (no end-of-image marker)")
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail and not _png_has_iend(data.tobytes()):
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
        st = os.stat(p)  # follows symlinks: a link to a regular file is fine
    except FileNotFoundError:
        raise ImageReadError("file not found" + (" (dangling symlink)" if p.is_symlink() else "")) from None
    except OSError as e:
        raise ImageReadError(f"cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError("is a directory")
    if not stat.S_ISREG(st.st_mode):
        # a FIFO would block the reader forever, a device could be endless
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else \
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise ImageReadError(f"not a regular file ({kind})" if kind != "not a regular file" else kind)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except IsADirectoryError:
        raise ImageReadError("is a directory") from None
    except OSError as e:
        raise ImageReadError(f"cannot read file ({e.strerror or e})") from None
    return decode_image(data, exif=exif)


def decode_image(data: bytes | np.ndarray, *, exif: bool = False) -> np.ndarray:
    """Decode an encoded image (the bytes of a file) as ``(H, W, 3)`` uint8 RGB, exactly as :func:`read_image`
    decodes a file's content (``ImageReadError`` for empty, truncated or undecodable data)."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size == 0:
        raise ImageReadError("empty file (0 bytes)")
    _check_truncated(data)
    flags = cv2.IMREAD_UNCHANGED if not exif else (cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as e:  # e.g. a header claiming more pixels than CV_IO_MAX_IMAGE_PIXELS
        msg = " ".join(str(e).split()).split(" error: ", 1)[-1] or "OpenCV error"
        raise ImageReadError(f"not a decodable image ({msg})") from None
    if img is None:
        raise ImageReadError("not a decodable image (unknown format or corrupt data)")
    if exif and img.ndim == 3 and img.shape[2] == 3:
        # IMREAD_COLOR applies EXIF orientation; it loses alpha (fine) and keeps 16 bit with ANYDEPTH.
        pass
    if img.size == 0 or min(img.shape[:2]) < 1:
        raise ImageReadError("image has no pixels")
    return _to_rgb8(img)
