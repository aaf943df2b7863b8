"""``facelm.prepare``: outputs, geometry of the crop cache, bad input, atomicity, hold-out split.

Everything runs on small synthetic images written to ``tmp_path`` (plus one check on ../shared/data when present).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import facelm.prepare as prep_mod
from facelm.datasets import RawFace
from facelm.errors import DataError, ExitCode, UsageError
from facelm.geometry import apply_affine, invert_affine
from facelm.manifest import CROPS_NAME, MANIFEST_NAME, PREPARE_NAME, load_manifest
from facelm.prepare import PrepareOptions, _validate_face, cache_landmarks, default_group, prepare
from facelm.synthetic import make_dataset, template_68

SUMMARY_KEYS = {"out", "format", "scheme", "faces", "images", "skipped", "splits", "subsets", "cache", "seconds",
                "images_per_s", "skipped_faces"}


def face_lm(cx: float, cy: float, side: float) -> np.ndarray:
    """A 68-point face whose landmark bounding box is about ``side`` wide, centred near (cx, cy)."""
    return (template_68() - 0.5) * side + np.array([cx, cy])


def write_csv_set(folder: Path, items: list[tuple[str, np.ndarray | None, np.ndarray]]) -> Path:
    """Write images (None: no file) and a header-less ``image,x0,y0,...`` CSV; returns the CSV path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, img, lm in items:
        if img is not None:
            assert cv2.imwrite(str(folder / name), img)
        rows.append(name + "," + ",".join(f"{v:.4f}" for v in np.asarray(lm).reshape(-1)))
    csv = folder / "landmarks.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def write_pts(path: Path, lm0: np.ndarray) -> None:
    """iBUG .pts (1-based) from 0-based points."""
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in lm0)
    path.write_text(f"version: 1\nn_points: {len(lm0)}\n{{\n{body}\n}}\n")


def face_image(h: int = 96, w: int = 96, value: int = 90) -> np.ndarray:
    img = np.full((h, w, 3), value, np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (180, 150, 130), -1)
    return img


def run(src: Path, out: Path, **kw) -> prep_mod.PrepareResult:
    kw.setdefault("fmt", "csv")
    kw.setdefault("workers", 2)
    return prepare(PrepareOptions(source=src, out=out, **kw))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A prepared synthetic set: (source folder, out folder, true landmarks (n, 68, 2), result)."""
    root = tmp_path_factory.mktemp("synth")
    csv, lm = make_dataset(root / "src", 8, size=96, seed=3)
    res = run(root / "src", root / "out")
    return root / "src", root / "out", lm, res


# ------------------------------------------------------------------------------------------------------------
# outputs


def test_outputs_and_summary(synth):
    src, out, lm, res = synth
    s = res.summary
    assert SUMMARY_KEYS <= set(s)
    assert (s["faces"], s["images"], s["skipped"], s["skipped_faces"]) == (8, 8, 0, [])
    assert s["format"] == "csv" and s["scheme"] == "300w68"
    assert s["splits"] == {"train": 8} and s["subsets"] == {}
    assert s["cache"] == {"file": CROPS_NAME, "size": 192, "margin": 1.8, "rows": 8, "bytes": 8 * 192 * 192 * 3}
    assert s["images_per_s"] > 0
    json.dumps(s)  # the CLI prints it

    for name in (MANIFEST_NAME, CROPS_NAME, PREPARE_NAME):
        assert (out / name).is_file(), name
    assert leftovers(out) == []
    info = json.loads((out / PREPARE_NAME).read_text())
    assert info["cache_size"] == 192 and info["margin"] == 1.8 and info["scheme"] == "300w68"
    assert info["crops"] == CROPS_NAME and info["channels"] == "RGB" and info["faces"] == 8

    m = load_manifest(out, scheme="300w68")
    assert len(m) == 8 and m.info == info
    crops = m.crops()
    assert crops.shape == (8, 192, 192, 3) and crops.dtype == np.uint8
    assert sorted(m.cache_index.tolist()) == list(range(8))
    for i, smp in enumerate(m.samples):
        assert m.image_path(i).is_file()  # image paths are relative to the manifest folder
        assert (smp.width, smp.height) == (96, 96)
        assert smp.split == "train" and smp.box_source == "landmarks" and smp.source.endswith(f":{i + 2}")
    assert len({smp.id for smp in m.samples}) == 8
    assert crops.reshape(8, -1).std(1).min() > 5  # real face content, not blank rows


def test_roundtrip_cache_coordinates(synth):
    """Manifest landmarks are the annotation; cache coordinates map back to them within 0.01 px."""
    src, out, lm_true, _ = synth
    m = load_manifest(out)
    order = np.argsort([smp.image for smp in m.samples])
    np.testing.assert_allclose(m.landmarks[order], lm_true, atol=0.01)
    lm_cache = cache_landmarks(m.cache_matrix, m.landmarks)
    for i in range(len(m)):
        mat = m.cache_matrix[i]
        np.testing.assert_allclose(lm_cache[i], apply_affine(mat, m.landmarks[i]), atol=1e-9)
        back = apply_affine(invert_affine(mat), apply_affine(mat, m.landmarks[i]))
        assert np.abs(back - m.landmarks[i]).max() < 0.01
        # the face box (landmark square x margin) fills the cache crop as documented
        assert 0 <= lm_cache[i].min() and lm_cache[i].max() <= 191
        span = (lm_cache[i].max(0) - lm_cache[i].min(0)).max()
        assert span == pytest.approx(192 / 1.8, rel=0.02)


@pytest.mark.parametrize("face_side,img_size", [(40, 120), (170, 260), (480, 640)])
def test_cache_pixels_are_where_the_matrix_says(tmp_path, face_side, img_size):
    """A bright dot drawn centred on a known pixel lands in the crop at M @ p (upscaled, reduced, and reduced
    with the INTER_AREA pre-shrink). The dot is one pixel when the crop enlarges, and a square of odd side
    (centroid still exactly p) when it shrinks, so that it covers a few crop pixels and its centroid is defined
    to a fraction of a pixel. The tolerance is half the 0.5 px asked for, so a half-pixel convention error
    fails."""
    rng = np.random.default_rng(face_side)
    r = face_side // 40 if face_side > 60 else 0
    items, dots = [], []
    for k in range(3):
        centre = np.array([img_size / 2, img_size / 2]) + rng.uniform(-0.05, 0.05, 2) * img_size
        lm = face_lm(*centre, face_side)
        p = np.round(centre + rng.uniform(-0.3, 0.3, 2) * face_side).astype(int)
        img = np.zeros((img_size, img_size, 3), np.uint8)
        img[p[1] - r:p[1] + r + 1, p[0] - r:p[0] + r + 1] = 255
        items.append((f"dot{k}.png", img, lm))
        dots.append(p.astype(np.float64))
    run(write_csv_set(tmp_path / "src", items).parent, tmp_path / "out")
    m = load_manifest(tmp_path / "out")
    crops = m.crops()
    for i, smp in enumerate(m.samples):
        k = int(Path(smp.image).stem[3:])
        crop = crops[m.cache_index[i]].astype(np.float64).sum(-1)
        expect = apply_affine(m.cache_matrix[i], dots[k])
        ys, xs = np.nonzero(crop > 0)
        assert len(xs), "the dot is missing from the crop"
        w = crop[ys, xs]
        found = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
        assert np.abs(found - expect).max() < 0.25, (found, expect)


def test_outside_pixels_are_black(tmp_path):
    lm = face_lm(20, 20, 30)  # face in the corner: most of the 1.8x crop lies outside the image
    run(write_csv_set(tmp_path / "src", [("c.png", np.full((60, 60, 3), 200, np.uint8), lm)]).parent,
        tmp_path / "out")
    crop = load_manifest(tmp_path / "out").crops()[0]
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-5, -5].tolist() == [200, 200, 200]


def test_workers_one_and_two_give_the_same_cache(synth, tmp_path):
    src, out2, _, _ = synth
    run(src, tmp_path / "w1", workers=1)
    a, b = load_manifest(tmp_path / "w1"), load_manifest(out2)
    np.testing.assert_array_equal(np.asarray(a.crops()), np.asarray(b.crops()))
    strip = [{k: v for k, v in s.model_dump().items() if k != "image"} for s in a.samples]
    assert strip == [{k: v for k, v in s.model_dump().items() if k != "image"} for s in b.samples]
    assert [a.image_path(i) for i in range(len(a))] == [b.image_path(i) for i in range(len(b))]


def test_limit_and_cache_options(synth, tmp_path):
    src = synth[0]
    res = run(src, tmp_path / "o", limit=3, cache_size=64, margin=1.5)
    assert res.summary["faces"] == 3
    m = load_manifest(tmp_path / "o")
    assert m.crops().shape == (3, 64, 64, 3) and m.info["cache_size"] == 64 and m.info["margin"] == 1.5


# ------------------------------------------------------------------------------------------------------------
# bad input


def test_bad_faces_are_skipped_and_named(tmp_path):
    """One run over a .pts folder holding every kind of bad face: good faces are kept, each bad one is listed
    with a one-line reason naming its file."""
    src = tmp_path / "src"
    src.mkdir()
    good = face_lm(48, 48, 50)
    for k in range(2):
        cv2.imwrite(str(src / f"good{k}.png"), face_image())
        write_pts(src / f"good{k}.pts", good + k)
    cv2.imwrite(str(src / "count.png"), face_image())
    write_pts(src / "count.pts", good[:67])  # 67 points: no scheme
    cv2.imwrite(str(src / "nan.png"), face_image())
    (src / "nan.pts").write_text("version: 1\nn_points: 68\n{\n" + "nan 3\n" + "10 10\n" * 67 + "}\n")
    cv2.imwrite(str(src / "far.png"), face_image())
    write_pts(src / "far.pts", good + 500)  # wildly outside the 96x96 image
    write_pts(src / "noimage.pts", good)  # no image beside it
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for ext in ("png", "jpg"):
        img = src / f"trunc_{ext}.{ext}"
        cv2.imwrite(str(img), noise)
        img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
        write_pts(src / f"trunc_{ext}.pts", good)
    (src / "empty.png").write_bytes(b"")
    write_pts(src / "empty.pts", good)
    (src / "text.jpg").write_text("not an image at all\n")
    write_pts(src / "text.pts", good)

    warnings: list[str] = []
    res = prepare(PrepareOptions(source=src, out=tmp_path / "out", fmt="pts", workers=2), warn=warnings.append)
    s = res.summary
    assert s["faces"] == 2 and s["images"] == 2
    bad = {"count", "nan", "far", "noimage", "trunc_png", "trunc_jpg", "empty", "text"}
    assert s["skipped"] == len(bad) == len(s["skipped_faces"]) == len(res.skipped) == len(warnings)
    by_stem = {Path(x.get("image") or x["source"]).stem: x for x in s["skipped_faces"]}
    assert set(by_stem) == bad
    expect = {"count": "67 points", "nan": "not a finite number", "far": "outside", "noimage": "no image",
              "trunc_png": "truncated PNG", "trunc_jpg": "truncated JPEG", "empty": "empty file",
              "text": "not a decodable image"}
    for stem, words in expect.items():
        reason = by_stem[stem]["reason"]
        assert words in reason and "\n" not in reason, (stem, reason)
    for w in warnings:
        assert "\n" not in w and any(b in w for b in bad), w  # each warning names the file
    m = load_manifest(tmp_path / "out")
    assert sorted(Path(x.image).stem for x in m.samples) == ["good0", "good1"]
    assert m.crops().shape[0] == 2 + 5  # rows for faces dropped after reading stay, unused


def test_validate_face_reasons():
    lm = face_lm(50, 50, 40)
    ok = RawFace(image=Path("x.png"), landmarks=lm, scheme="300w68")
    assert _validate_face(ok, 68, 100, 100, 0.5) is None
    nan = lm.copy()
    nan[5, 0] = np.nan
    assert "NaN" in _validate_face(RawFace(Path("x.png"), nan, "300w68"), 68, 100, 100, 0.5)
    assert "infinite" in _validate_face(RawFace(Path("x.png"), lm * np.inf, "300w68"), 68, 100, 100, 0.5)
    assert "outside" in _validate_face(RawFace(Path("x.png"), lm + 90, "300w68"), 68, 100, 100, 0.5)
    assert _validate_face(RawFace(Path("x.png"), lm + 15, "300w68"), 68, 100, 100, 0.5) is None  # a bit out: ok
    assert "degenerate" in _validate_face(RawFace(Path("x.png"), lm * 0 + 3, "300w68"), 68, 100, 100, 0.5)
    assert "landmarks" in _validate_face(RawFace(Path("x.png"), lm[:60], "300w68"), 68, 100, 100, 0.5)


def test_csv_with_nan_and_missing_image(tmp_path):
    lm = face_lm(48, 48, 50)
    csv = write_csv_set(tmp_path / "src", [("a.png", face_image(), lm), ("gone.png", None, lm)])
    with csv.open("a") as f:
        f.write("a.png," + ",".join(["nan"] * 136) + "\n")
    res = run(csv, tmp_path / "out")
    assert res.summary["faces"] == 1 and res.summary["skipped"] == 2
    reasons = " | ".join(x["reason"] for x in res.skipped)
    assert "gone.png" in reasons and "landmarks.csv: line 3" in reasons and "finite" in reasons


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    for fmt in ("auto", "csv", "pts"):
        with pytest.raises(DataError) as e:
            run(tmp_path / "empty", tmp_path / "out", fmt=fmt)
        assert e.value.code == ExitCode.DATA and "empty" in str(e.value)
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_missing_source_or_annotation_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        run(tmp_path / "nope.csv", tmp_path / "out")


def test_unknown_format_and_bad_options_are_usage_errors(synth, tmp_path):
    src = synth[0]
    with pytest.raises(UsageError, match="unknown format 'bogus'") as e:
        run(src, tmp_path / "o", fmt="bogus")
    assert e.value.code == ExitCode.USAGE
    for kw, words in [({"split": "dev"}, "`split`"), ({"holdout": 1.0}, "`holdout`"), ({"cache_size": 8}, "cache"),
                      ({"margin": 0.5}, "margin"), ({"workers": -1}, "workers"), ({"limit": -2}, "limit"),
                      ({"scheme": "nosuch"}, "unknown landmark scheme")]:
        with pytest.raises(UsageError, match=words):
            run(src, tmp_path / "o", **kw)
    bad_scheme = tmp_path / "broken.json"
    bad_scheme.write_text("{not json")
    with pytest.raises(UsageError, match="broken.json"):
        run(src, tmp_path / "o", scheme=str(bad_scheme))
    assert not (tmp_path / "o").exists()  # nothing written on usage errors


def test_all_faces_bad_is_a_data_error(tmp_path):
    lm = face_lm(48, 48, 50)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"")
    (src / "b.jpg").write_text("text")
    csv = src / "l.csv"
    row = ",".join(f"{v:.2f}" for v in lm.reshape(-1))
    csv.write_text(f"a.png,{row}\nb.jpg,{row}\n")
    with pytest.raises(DataError, match="none of the 2 faces") as e:
        run(src, tmp_path / "out")
    assert e.value.code == ExitCode.DATA
    assert not (tmp_path / "out").exists()  # the folder this run created, and nothing in it, is gone


def test_manifest_of_another_scheme(synth):
    out = synth[1]
    assert load_manifest(out, scheme="300w68").scheme == "300w68"
    with pytest.raises(DataError, match="scheme is '300w68', expected 'wflw98'"):
        load_manifest(out, scheme="wflw98")


# ------------------------------------------------------------------------------------------------------------
# atomic outputs


def test_interrupted_prepare_keeps_the_previous_dataset(tmp_path, monkeypatch):
    csv, _ = make_dataset(tmp_path / "src", 40, size=48, seed=1)
    out = tmp_path / "out"
    run(tmp_path / "src", out)
    assert (out / MANIFEST_NAME).is_file()  # an older complete prepare

    calls = {"n": 0}
    real = prep_mod.warp_crop

    def failing(*a, **kw):
        calls["n"] += 1
        time.sleep(0.02)  # a realistic decode time, so the interrupt comes while images are still queued
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(prep_mod, "warp_crop", failing)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "src", out, workers=2)
    # the new dataset was built beside the old one: the old one is still complete, nothing else is left
    before = load_manifest(out)
    assert len(before) == 40 and before.crops().shape[0] == 40
    assert leftovers(out) == []
    assert calls["n"] < 30, "queued images must be dropped on Ctrl-C, not all 40 decoded first"

    monkeypatch.setattr(prep_mod, "warp_crop", real)
    assert run(tmp_path / "src", out).summary["faces"] == 40  # a re-run recovers
    assert load_manifest(out).crops().shape[0] == 40 and leftovers(out) == []


def test_ctrl_c_in_the_main_thread_stops_promptly(tmp_path, monkeypatch):
    """A KeyboardInterrupt in the main thread (here from the progress callback) drops the queued images."""
    make_dataset(tmp_path / "src", 40, size=48, seed=4)
    real = prep_mod.warp_crop
    calls = {"n": 0}

    def slow(*a, **kw):
        calls["n"] += 1
        time.sleep(0.02)
        return real(*a, **kw)

    def progress(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(prep_mod, "warp_crop", slow)
    with pytest.raises(KeyboardInterrupt):
        prepare(PrepareOptions(source=tmp_path / "src", out=tmp_path / "out", workers=2), progress=progress)
    assert calls["n"] < 30
    assert not (tmp_path / "out").exists()  # the folder the interrupted run created is gone


def test_interrupt_while_reading_images(tmp_path, monkeypatch):
    make_dataset(tmp_path / "src", 10, size=64, seed=2)
    out = tmp_path / "out"
    run(tmp_path / "src", out)
    real = prep_mod.read_image
    seen = []

    def failing(path, **kw):
        seen.append(path)
        if len(seen) == 4:
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(prep_mod, "read_image", failing)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "src", out, workers=1)
    assert len(load_manifest(out)) == 10 and leftovers(out) == []  # the previous dataset is intact


def test_interrupt_while_writing_the_manifest(tmp_path, monkeypatch):
    make_dataset(tmp_path / "src", 4, size=64, seed=2)
    out = tmp_path / "out"
    run(tmp_path / "src", out)

    def boom(path, samples):
        from facelm._io import atomic_write

        with atomic_write(path, "w") as f:
            f.write("{partial")
            raise KeyboardInterrupt

    monkeypatch.setattr(prep_mod, "write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "src", out)
    assert len(load_manifest(out)) == 4 and leftovers(out) == []  # the previous dataset is intact


# ------------------------------------------------------------------------------------------------------------
# hold-out split


def test_default_group():
    assert default_group(Path("Abdel_Aziz_Al-Hakim_02.jpg")) == "Abdel_Aziz_Al-Hakim"
    assert default_group(Path("d/name_00.png")) == default_group(Path("e/name_01.png")) == "name"
    assert default_group(Path("frame-0012.jpg")) == "frame"
    assert default_group(Path("0001.png")) == "0001"
    assert default_group(Path("face.png")) == "face"


def test_holdout_is_deterministic_and_grouped(tmp_path):
    lm = face_lm(48, 48, 50)
    img = face_image()
    names = [f"person{k:02d}_{j:02d}.png" for k in range(16) for j in range(3)]
    csv = write_csv_set(tmp_path / "src", [(n, img, lm) for n in names])

    def splits(out: Path, **kw) -> dict[str, str]:
        res = run(csv, out, holdout=0.25, **kw)
        m = load_manifest(out)
        got = {Path(s.image).name: s.split for s in m.samples}
        assert res.summary["splits"] == {k: list(got.values()).count(k) for k in set(got.values())}
        return got

    a, b = splits(tmp_path / "a"), splits(tmp_path / "b", workers=1)
    assert a == b and len(a) == len(names)
    groups: dict[str, set[str]] = {}
    for n, sp in a.items():
        groups.setdefault(n.rsplit("_", 1)[0], set()).add(sp)
    assert all(len(v) == 1 for v in groups.values()), groups
    n_val = sum(v == {"val"} for v in groups.values())
    assert 1 <= n_val <= 10 and set(a.values()) == {"train", "val"}

    none = run(csv, tmp_path / "c").summary["splits"]
    assert none == {"train": len(names)}
    test = run(csv, tmp_path / "d", split="test", holdout=0.25).summary["splits"]
    assert test == {"test": len(names)}  # only training faces are held out


# ------------------------------------------------------------------------------------------------------------
# real data (skipped when ../shared/data is absent)


@pytest.mark.shared_data
def test_prepare_ytf68_sample(shared_data, tmp_path):
    root = shared_data("ytf68-train")
    res = prepare(PrepareOptions(source=root, out=tmp_path / "ytf", limit=40, holdout=0.25, workers=2))
    s = res.summary
    assert s["format"] == "csv" and s["scheme"] == "300w68" and s["faces"] + s["skipped"] >= 40
    m = load_manifest(tmp_path / "ytf", scheme="300w68")
    assert len(m) == s["faces"] and m.crops().shape[1:] == (192, 192, 3)
    for i in range(len(m)):
        assert m.image_path(i).is_file()
    by_group: dict[str, set[str]] = {}
    for smp in m.samples:
        by_group.setdefault(smp.group, set()).add(smp.split)
    assert all(len(v) == 1 for v in by_group.values())


def test_holdout_falls_back_to_per_image_groups_for_camera_names(tmp_path):
    import shutil

    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset

    csv, _ = make_dataset(tmp_path / "raw", n=60, seed=5)
    lines = csv.read_text().splitlines()
    out_lines = [lines[0]]
    for i, line in enumerate(lines[1:]):
        name, rest = line.split(",", 1)
        shutil.move(tmp_path / "raw" / name, tmp_path / "raw" / f"IMG_{1000 + i}.png")
        out_lines.append(f"IMG_{1000 + i}.png,{rest}")
    csv.write_text("\n".join(out_lines) + "\n")
    warnings = []
    res = prepare(PrepareOptions(source=csv, out=tmp_path / "prep", fmt="csv", holdout=0.3, workers=1),
                  warn=warnings.append)
    assert any("grouping the hold-out by image" in w for w in warnings)
    assert 0 < res.summary["splits"].get("val", 0) < 60


def test_several_sources_merge_into_one_prepared_folder(tmp_path):
    from facelm.manifest import load_manifest
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset

    a, _ = make_dataset(tmp_path / "a", n=6, seed=1)
    b, _ = make_dataset(tmp_path / "b", n=9, seed=2)
    res = prepare(PrepareOptions(source=[a, b], out=tmp_path / "prep", workers=1))
    assert res.summary["faces"] == 15 and res.summary["format"] == "csv"
    m = load_manifest(tmp_path / "prep")
    assert len({s.image for s in m.samples}) == 15
    assert len(m.crops()) == 15
    assert sorted(m.info["source"]) == sorted(str(p.resolve()) for p in (a, b))


def test_cli_prepare_accepts_several_sources(tmp_path):
    import json

    from typer.testing import CliRunner

    from facelm.cli import app
    from facelm.synthetic import make_dataset

    a, _ = make_dataset(tmp_path / "a", n=4, seed=1)
    b, _ = make_dataset(tmp_path / "b", n=5, seed=2)
    r = CliRunner().invoke(app, ["prepare", str(a), str(b), "--out", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["faces"] == 9
    r2 = CliRunner().invoke(app, ["prepare", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "q")])
    assert r2.exit_code == 3 and "nope" in r2.stderr
