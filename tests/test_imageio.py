"""``facelm.imageio.read_image``: every kind of PNG/JPEG a dataset holds comes back as (H, W, 3) uint8 RGB with
the right values, and broken files raise ``ImageReadError`` (never an OpenCV exception or a grey image)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facelm.imageio import ImageReadError, read_image

RNG = np.random.default_rng(7)


def _write(path: Path, img: np.ndarray, params: list[int] | None = None) -> Path:
    assert cv2.imwrite(str(path), img, params or []), path
    return path


def _check_rgb8(img: np.ndarray, shape: tuple[int, int]) -> None:
    assert img.dtype == np.uint8 and img.shape == (*shape, 3)


# ------------------------------------------------------------------------------------------------------------
# formats that must load


def test_rgb_png_is_rgb_not_bgr(tmp_path):
    bgr = RNG.integers(0, 256, (21, 34, 3), dtype=np.uint8)
    bgr[0, 0] = (0, 0, 255)  # pure red in OpenCV's BGR order
    img = read_image(_write(tmp_path / "c.png", bgr))
    _check_rgb8(img, (21, 34))
    np.testing.assert_array_equal(img, bgr[:, :, ::-1])
    assert tuple(img[0, 0]) == (255, 0, 0)


def test_grayscale_png(tmp_path):
    g = RNG.integers(0, 256, (17, 23), dtype=np.uint8)
    img = read_image(_write(tmp_path / "g.png", g))
    _check_rgb8(img, (17, 23))
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], g)


def test_rgba_png_drops_alpha_keeps_colour(tmp_path):
    bgra = RNG.integers(0, 256, (19, 13, 4), dtype=np.uint8)
    bgra[:, :, 3] = RNG.integers(0, 256, (19, 13))  # alpha varies, including fully transparent pixels
    bgra[0, 0, 3] = 0
    img = read_image(_write(tmp_path / "a.png", bgra))
    _check_rgb8(img, (19, 13))
    np.testing.assert_array_equal(img, bgra[:, :, 2::-1])  # colour as stored, not premultiplied


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_scaled_by_257(tmp_path, channels):
    shape = (12, 15) if channels == 1 else (12, 15, channels)
    exact = (RNG.integers(0, 256, shape) * 257).astype(np.uint16)  # multiples of 257 map exactly
    img = read_image(_write(tmp_path / f"e{channels}.png", exact))
    _check_rgb8(img, (12, 15))
    expect = exact // 257
    if channels == 1:
        expect = np.repeat(expect[:, :, None], 3, axis=2)
    else:
        expect = expect[:, :, 2::-1]
    np.testing.assert_array_equal(img, expect.astype(np.uint8))

    anyv = RNG.integers(0, 65536, shape).astype(np.uint16)
    anyv.flat[:3] = [0, 65535, 128]
    img = read_image(_write(tmp_path / f"v{channels}.png", anyv))
    ref = np.round(anyv.astype(np.float64) / 257.0)
    ref = np.repeat(ref[:, :, None], 3, axis=2) if channels == 1 else ref[:, :, 2::-1]
    assert np.abs(img.astype(np.float64) - ref).max() <= 0.5 + 1e-9
    assert img.max() <= 255


def test_jpeg_colour_and_gray(tmp_path):
    bgr = np.zeros((32, 48, 3), np.uint8)
    bgr[:, :24] = (40, 80, 200)  # two flat colour blocks survive JPEG almost exactly
    bgr[:, 24:] = (200, 120, 10)
    img = read_image(_write(tmp_path / "c.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 98]))
    _check_rgb8(img, (32, 48))
    assert np.abs(img[8:24, 4:18].astype(int) - [200, 80, 40]).max() <= 6
    assert np.abs(img[8:24, 30:44].astype(int) - [10, 120, 200]).max() <= 6
    g = np.full((16, 16), 99, np.uint8)
    img = read_image(_write(tmp_path / "g.jpg", g))
    _check_rgb8(img, (16, 16))
    assert np.abs(img.astype(int) - 99).max() <= 2


def test_exif_flag_on_plain_files(tmp_path):
    bgr = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    p = _write(tmp_path / "x.png", bgr)
    np.testing.assert_array_equal(read_image(p, exif=True), read_image(p, exif=False))
    g16 = (RNG.integers(0, 256, (9, 11)) * 257).astype(np.uint16)
    img = read_image(_write(tmp_path / "g16.png", g16), exif=True)
    _check_rgb8(img, (9, 11))
    np.testing.assert_array_equal(img[:, :, 1], (g16 // 257).astype(np.uint8))


def test_valid_files_with_trailing_data_load(tmp_path):
    """Data after the end marker (phone motion photos, padding) is not truncation."""
    bgr = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for suffix in (".jpg", ".png"):
        p = _write(tmp_path / f"t{suffix}", bgr)
        p.write_bytes(p.read_bytes() + bytes(range(256)) * 40)  # 10 KiB, more than the 4 KiB tail looked at
        assert read_image(p).shape == (20, 30, 3)


# ------------------------------------------------------------------------------------------------------------
# broken files


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_images(tmp_path, suffix, keep):
    bgr = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # noise: big files, truncation mid-data
    p = _truncate(_write(tmp_path / f"t{suffix}", bgr), keep)
    with pytest.raises(ImageReadError, match="truncated|not a decodable"):
        read_image(p)


def test_jpeg_missing_only_its_end_marker(tmp_path):
    p = _write(tmp_path / "e.jpg", RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(p)


def test_truncated_inside_the_headers(tmp_path):
    p = _write(tmp_path / "h.png", RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(ImageReadError, match="truncated PNG"):
        read_image(p)
    q = _write(tmp_path / "h.jpg", RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    q.write_bytes(q.read_bytes()[:30])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(q)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "z.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n" * 20)
    with pytest.raises(ImageReadError, match="not a decodable image"):
        read_image(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_header_claiming_a_huge_image_is_a_read_error(tmp_path):
    """OpenCV raises cv2.error (not None) for this; read_image must turn it into ImageReadError."""
    p = tmp_path / "huge.pgm"
    p.write_bytes(b"P5\n100000 100000\n255\n" + b"\0" * 64)
    with pytest.raises(ImageReadError) as e:
        read_image(p)
    assert "\n" not in str(e.value)


def test_garbage_after_valid_magic(tmp_path):
    p = tmp_path / "g.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100 + b"IEND")
    q = tmp_path / "g.jpg"
    q.write_bytes(b"\xff\xd8\xff" + b"x" * 100 + b"\xff\xd9")
    for f in (p, q):
        with pytest.raises(ImageReadError):
            read_image(f)
