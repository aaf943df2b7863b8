"""facelm.balance and ``facelm balance``: pose-based data balancing (docs/balance.md).

Synthetic faces: a rigid 3D 68-point face (the drawn template plus a depth model: receding cheeks, a nose that
stands out) turned about the vertical axis by a known yaw drawn from a skewed distribution, projected
orthographically, then given a random in-plane rotation, scale, translation and noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from facelm.balance import (
    DIRECTION,
    PoseModel,
    align_to_mean,
    assign_bins,
    balance_indices,
    balance_manifest,
    canonical_procrustes,
    coordinate_bins,
    default_bins,
    fit_pose_model,
    histogram,
    load_pose_model,
    pose_coordinate,
    spearman,
    yaw_proxy,
)
from facelm.cli import app
from facelm.errors import DataError, ModelError, UsageError
from facelm.geometry import generalized_procrustes, procrustes_align
from facelm.manifest import CROPS_NAME, CacheRef, Sample, load_manifest, write_manifest
from facelm.synthetic import template_68

SUMMARY_KEYS = {"out", "scheme", "bins", "component", "explained_variance", "asymmetry_corr", "sign",
                "faces_before", "faces_after", "hist_before", "hist_after", "bin_edges", "max_dup",
                "duplicated_faces"}


# --- synthetic shapes with a known yaw ---------------------------------------------------------------------------

def face_3d() -> np.ndarray:
    """(68, 3) x right, y down, z toward the camera; symmetric about x = 0."""
    t = template_68() - 0.5
    x, y = t[:, 0], t[:, 1]
    z = -1.0 * x ** 2  # the cheeks recede
    z[27:31] += np.linspace(0.06, 0.2, 4)  # nose bridge -> tip
    z[31:36] += np.array([0.08, 0.11, 0.14, 0.11, 0.08])  # nostrils
    z[48:68] += 0.04  # lips
    z[0:17] -= 0.08  # jaw outline
    return np.stack([x, y, z], 1)


def to_5pt(lm68: np.ndarray) -> np.ndarray:
    return np.stack([lm68[..., 36:42, :].mean(-2), lm68[..., 42:48, :].mean(-2), lm68[..., 30, :],
                     lm68[..., 48, :], lm68[..., 54, :]], -2)


def yawed_faces(n: int, seed: int = 0, yaw_deg: np.ndarray | None = None, mouth: float = 0.0,
                noise: float = 0.004, roll: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks (n, 68, 2) in pixels, yaw in degrees (n,)); + yaw = nose toward the image right.

    Default yaw: -30 + 90 * Beta(2, 4) (mode near -8 degrees, a long tail to the right: skewed).
    ``mouth``: amplitude of a symmetric deformation (lower face stretched vertically), uniform in [-mouth, mouth].
    """
    rng = np.random.default_rng(seed)
    f = face_3d()
    yaw = -30 + 90 * rng.beta(2, 4, n) if yaw_deg is None else np.asarray(yaw_deg, dtype=float)
    out = []
    for k in range(n):
        g = f.copy()
        if mouth:
            g[48:68, 1] += rng.uniform(-mouth, mouth) * (1 + g[48:68, 1])
            g[5:12, 1] += rng.uniform(-mouth, mouth)
        th = math.radians(yaw[k])
        x = g[:, 0] * math.cos(th) + g[:, 2] * math.sin(th)
        p = np.stack([x, g[:, 1]], 1)
        a = math.radians(rng.uniform(-roll, roll))
        r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        s = rng.uniform(60, 140)
        p = (p @ r.T) * s + rng.uniform(50, 200, 2) + rng.normal(0, noise * s, p.shape)
        out.append(p)
    return np.array(out), yaw


@pytest.fixture(scope="module")
def faces68():
    return yawed_faces(300, seed=1)


@pytest.fixture(scope="module")
def model68(faces68):
    return fit_pose_model(faces68[0], "300w68")


# --- Procrustes --------------------------------------------------------------------------------------------------

def test_procrustes_leaves_an_aligned_set_unchanged(faces68):
    lm, _ = faces68
    aligned, mean = canonical_procrustes(lm[:120], "300w68")
    again, mean2 = canonical_procrustes(aligned, "300w68")
    np.testing.assert_allclose(again, aligned, atol=1e-9)
    np.testing.assert_allclose(mean2, mean, atol=1e-9)
    # the canonical frame: centred, unit RMS size, eye line along +x
    np.testing.assert_allclose(mean.mean(0), 0, atol=1e-12)
    assert math.isclose(np.sqrt((mean ** 2).sum(1).mean()), 1.0, rel_tol=1e-12)
    le, re = mean[36:42].mean(0), mean[42:48].mean(0)
    assert re[0] > le[0] and abs(re[1] - le[1]) < 1e-9


def test_procrustes_matches_geometry_gpa_up_to_a_rotation(faces68):
    lm, _ = faces68
    aligned, mean = canonical_procrustes(lm[:40], "300w68")
    g_aligned, g_mean = generalized_procrustes(lm[:40])
    rotated, m = procrustes_align(g_mean, mean)
    np.testing.assert_allclose(rotated, mean, atol=1e-6)
    assert math.isclose(np.hypot(m[0, 0], m[1, 0]), 1.0, rel_tol=1e-6)  # a pure rotation
    for a, b in zip(aligned[:5], g_aligned[:5]):
        np.testing.assert_allclose(procrustes_align(b, mean)[0], a, atol=1e-6)


def test_align_to_mean_matches_procrustes_align_and_ignores_missing_points(faces68):
    lm, _ = faces68
    _, mean = canonical_procrustes(lm[:50], "300w68")
    got = align_to_mean(lm[:5], mean)
    for k in range(5):
        np.testing.assert_allclose(got[k], procrustes_align(lm[k], mean)[0], atol=1e-9)
    holed = lm[:1].copy()
    holed[0, 10:20] = np.nan
    keep = np.isfinite(holed[0]).all(1)
    part = align_to_mean(holed, mean)[0]
    ref, _ = procrustes_align(lm[0, keep], mean[keep])
    np.testing.assert_allclose(part[keep], ref, atol=1e-9)
    assert np.isnan(part[~keep]).all()
    assert np.isnan(align_to_mean(np.full((1, 68, 2), 5.0), mean)).all()  # degenerate -> NaN


# --- the pose component ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["300w68", "5pt"])
def test_component_tracks_yaw_with_a_fixed_sign(faces68, model68, scheme):
    lm, yaw = faces68
    if scheme == "5pt":
        lm = to_5pt(lm)
    model = model68 if scheme == "300w68" else fit_pose_model(lm, scheme)
    c = pose_coordinate(model, lm)
    rho = spearman(c, yaw)
    assert rho > 0.9, rho  # positive: + yaw (nose toward the image right) -> + coordinate
    assert model.asymmetry_corr > 0.9
    assert model.bins == default_bins(scheme) == 9
    # the mirrored set (yaw negated) gets the mirrored coordinates
    from facelm.schemes import get_scheme

    mirrored = get_scheme(scheme).flip(lm, width=400)
    mm = fit_pose_model(mirrored, scheme)
    assert spearman(pose_coordinate(mm, mirrored), -yaw) > 0.9


def test_component_is_chosen_not_assumed_first():
    lm, yaw = yawed_faces(200, seed=3, yaw_deg=np.random.default_rng(3).uniform(-12, 12, 200), mouth=0.12)
    model = fit_pose_model(lm, "300w68")
    assert model.component_index != 0  # the symmetric mouth/jaw stretch has more variance than the yaw
    assert abs(model.candidates[0]["asymmetry_corr"]) < 0.3
    assert spearman(pose_coordinate(model, lm), yaw) > 0.9
    forced = fit_pose_model(lm, "300w68", component=0)
    assert forced.component_forced and forced.component_index == 0


def test_fit_is_deterministic_and_serialisable(faces68, model68, tmp_path):
    lm, _ = faces68
    a, b = model68, fit_pose_model(lm.copy(), "300w68")
    assert a.model_dump() == b.model_dump()
    p = tmp_path / "pm.json"
    p.write_text(json.dumps(a.model_dump()))
    back = load_pose_model(p)
    np.testing.assert_array_equal(assign_bins(back, lm), assign_bins(a, lm))
    assert back.direction == DIRECTION and back.sign in (-1, 1)


def test_bins_robust_limits_and_undefined_faces(faces68):
    lm, _ = faces68
    model = fit_pose_model(lm, "300w68", bins=5)
    e = model.edges
    assert len(e) == 6 and np.all(np.diff(e) > 0)
    c = np.array([e[0] - 10, e[0], (e[2] + e[3]) / 2, e[-1], e[-1] + 10, np.nan])
    assert coordinate_bins(model, c).tolist() == [0, 0, 2, 4, 4, -1]
    assert assign_bins(model, np.full((1, 68, 2), 3.0)).tolist() == [-1]
    assert histogram(np.array([0, 0, 4, -1]), 5).tolist() == [2, 0, 0, 0, 1]


def test_yaw_proxy_sign():
    f = face_3d()
    right = np.stack([f[:, 0] * math.cos(0.4) + f[:, 2] * math.sin(0.4), f[:, 1]], 1)  # nose to image right
    left = np.stack([f[:, 0] * math.cos(-0.4) + f[:, 2] * math.sin(-0.4), f[:, 1]], 1)
    p = yaw_proxy(np.stack([right, left]), "300w68")
    assert p[0] > 0 > p[1]


def test_fit_errors(faces68):
    lm, _ = faces68
    with pytest.raises(DataError, match="fewer than the 9 bins"):
        fit_pose_model(lm[:8], "300w68")
    bad = lm[:50].copy()
    bad[7] = 12.0
    with pytest.raises(DataError, match="degenerate.*face-7"):
        fit_pose_model(bad, "300w68", ids=[f"face-{i}" for i in range(50)])
    with pytest.raises(UsageError):
        fit_pose_model(lm, "300w68", bins=1)
    flat, _ = yawed_faces(150, seed=4, yaw_deg=np.zeros(150), mouth=0.1)
    with pytest.raises(DataError, match="no pose component"):
        fit_pose_model(flat, "300w68")
    with pytest.raises(DataError, match=r"\(N, 5, 2\)"):
        fit_pose_model(lm, "5pt")


# --- balancing ---------------------------------------------------------------------------------------------------

def test_balanced_histogram_is_flat_when_the_cap_does_not_bind(faces68, model68):
    lm, _ = faces68
    model = model68
    b = assign_bins(model, lm)
    before = histogram(b, model.bins)
    assert before.max() / before.min() > 3  # the skewed yaw distribution
    idx = balance_indices(b, model.bins, max_dup=int(before.max()))
    after = histogram(b[idx], model.bins)
    assert after.max() / after[after > 0].min() <= 1.5
    np.testing.assert_array_equal(idx[:len(b)], np.arange(len(b)))
    again = balance_indices(b.copy(), model.bins, max_dup=int(before.max()))
    np.testing.assert_array_equal(again, idx)


def test_cap_and_even_spread():
    bins = np.array([0] * 100 + [1] * 3 + [2] * 7 + [-1] * 2)
    idx = balance_indices(bins, 4, max_dup=10, seed=0)
    after = histogram(bins[idx], 4)
    assert after.tolist() == [100, 33, 77, 0]  # bin 1 capped at 3 * 11; empty bin 3 stays empty
    per_face = np.bincount(idx, minlength=len(bins))
    assert per_face[100:103].tolist() == [11, 11, 11]
    assert set(per_face[103:110].tolist()) <= {10, 11} and per_face[103:110].sum() == 77  # floor/ceil of 11
    assert per_face[:100].tolist() == [1] * 100 and per_face[110:].tolist() == [1, 1]  # full bin, unbinned
    sq = histogram(bins[balance_indices(bins, 4, target="sqrt", max_dup=10)], 4)
    assert sq.tolist() == [100, 17, 26, 0]  # round(sqrt(3 * 100)), round(sqrt(7 * 100))
    with pytest.raises(UsageError):
        balance_indices(bins, 4, target="flat")
    with pytest.raises(UsageError):
        balance_indices(bins, 4, max_dup=-1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-1, 5), min_size=1, max_size=80), st.integers(0, 6), st.integers(0, 3),
       st.sampled_from(["uniform", "sqrt"]))
def test_balance_indices_properties(bins, max_dup, seed, target):
    b = np.array(bins)
    idx = balance_indices(b, 6, target=target, max_dup=max_dup, seed=seed)
    np.testing.assert_array_equal(idx[:len(b)], np.arange(len(b)))
    assert np.all(np.diff(idx[len(b):]) >= 0)
    per_face = np.bincount(idx, minlength=len(b))
    assert per_face.max() <= 1 + max_dup
    assert np.all(per_face[b < 0] == 1)
    before, after = histogram(b, 6), histogram(b[idx], 6)
    assert np.all(after <= max(before.max(), 0)) and np.all(after >= before) and np.all(after[before == 0] == 0)
    if target == "uniform":
        want = np.where(before > 0, np.minimum(before.max(), before * (1 + max_dup)), 0)
        np.testing.assert_array_equal(after, want)
    for j in range(6):  # copies spread evenly: every face of a bin appears floor or ceil times
        pf = per_face[b == j]
        if pf.size:
            assert pf.max() - pf.min() <= 1
    np.testing.assert_array_equal(idx, balance_indices(b, 6, target=target, max_dup=max_dup, seed=seed))


# --- balanced manifests ------------------------------------------------------------------------------------------

def write_prepared(folder: Path, lm: np.ndarray, splits: list[str], scheme: str = "300w68") -> Path:
    """A prepared dataset without images: manifest, a tiny crops.npy (row i filled with i) and prepare.json."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i, (p, sp) in enumerate(zip(lm, splits)):
        lo, hi = np.nanmin(p, 0), np.nanmax(p, 0)
        samples.append(Sample(id=f"f{i:04d}", image=f"imgs/f{i:04d}.png", width=400, height=400,
                              box=[*lo.tolist(), *hi.tolist()], landmarks=p.tolist(), scheme=scheme, split=sp,
                              cache=CacheRef(index=i, matrix=[[0.1, 0, 0], [0, 0.1, 0]])))
    write_manifest(folder / "manifest.jsonl", samples)
    np.save(folder / CROPS_NAME, np.arange(len(lm), dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3),
                                                                                                   np.uint8))
    (folder / "prepare.json").write_text(json.dumps({"scheme": scheme, "crops": CROPS_NAME, "cache_size": 4,
                                                     "margin": 1.8}))
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, faces68):
    lm = faces68[0][:200]
    splits = ["val" if i % 10 == 0 else "train" for i in range(len(lm))]
    return write_prepared(tmp_path_factory.mktemp("bal") / "data", lm, splits)


@pytest.fixture(scope="module")
def balanced(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("balanced") / "nested" / "bal"
    return out, balance_manifest(prepared, out).summary


def test_balance_manifest_reuses_the_crop_cache(prepared, balanced, tmp_path):
    out, s = balanced
    assert not (out / CROPS_NAME).exists()
    src, bal = load_manifest(prepared), load_manifest(out)
    crops = bal.crops()
    assert Path(crops.filename).resolve() == (prepared / CROPS_NAME).resolve()
    np.testing.assert_array_equal(np.asarray(crops), np.asarray(src.crops()))
    # every original line first, unchanged but for the re-rooted image path
    n = len(src)
    for a, b in zip(src.samples, bal.samples[:n]):
        assert (bal.root / b.image).resolve() == (src.root / a.image).resolve()
        assert b.model_dump(exclude={"image"}) == a.model_dump(exclude={"image"})
    dups = bal.samples[n:]
    assert len(dups) == s["added_lines"] == s["faces_after"] - s["faces_before"] > 0
    assert len({x.id for x in bal.samples}) == len(bal)
    for d in dups:
        o = bal.samples[d.dup_of]
        assert o.split == "train" and o.dup_of is None and d.id.startswith(o.id + "#dup")
        assert d.model_dump(exclude={"id", "dup_of"}) == o.model_dump(exclude={"id", "dup_of"})
    assert len(bal.split("train")) == s["faces_after"] and len(bal.split("val")) == len(src.split("val"))
    assert sum(s["hist_before"]) == s["faces_before"] and sum(s["hist_after"]) == s["faces_after"]
    assert max(s["hist_after"]) / min(h for h in s["hist_after"] if h) <= 1.5
    # the saved model bins the training faces as in the summary
    pm = load_pose_model(out / "pose_model.json")
    train = src.split("train")
    assert histogram(assign_bins(pm, train.landmarks), pm.bins).tolist() == s["hist_before"]
    # deterministic: another run (into a folder at the same depth) writes the same files
    balance_manifest(prepared, tmp_path / "again" / "bal")
    for name in ("manifest.jsonl", "pose_model.json"):
        assert (tmp_path / "again" / "bal" / name).read_bytes() == (out / name).read_bytes()
    rel = json.loads((out / "prepare.json").read_text())["crops"]
    assert rel.startswith("../") and (out / rel).resolve() == (prepared / CROPS_NAME).resolve()


def test_balance_manifest_refuses_bad_outputs_and_inputs(prepared, balanced, tmp_path):
    with pytest.raises(UsageError, match="source folder"):
        balance_manifest(prepared, prepared)
    with pytest.raises(UsageError, match="crop cache"):
        balance_manifest(prepared, _with_crops(tmp_path / "p"))
    with pytest.raises(DataError, match="already balanced"):
        balance_manifest(balanced[0], tmp_path / "b2")


def _with_crops(folder: Path) -> Path:
    folder.mkdir(parents=True)
    np.save(folder / CROPS_NAME, np.zeros((1, 2, 2, 3), np.uint8))
    return folder


# --- the command line --------------------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_balance_json_table_and_plot(prepared, tmp_path):
    out, plot = tmp_path / "cli", tmp_path / "hist.png"
    r = invoke("balance", prepared, "--out", out, "--bins", 7, "--plot", plot)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("\n") == 1
    s = json.loads(r.stdout)
    assert SUMMARY_KEYS <= set(s)
    assert s["bins"] == 7 == len(s["hist_before"]) == len(s["hist_after"]) == len(s["bin_edges"]) - 1
    assert s["scheme"] == "300w68" and s["sign"] in (-1, 1) and s["max_dup"] == 10
    assert "before" in r.stderr and "after" in r.stderr and "{" not in r.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _mixed(tmp_path: Path, prepared: Path) -> Path:
    d = tmp_path / "mixed"
    d.mkdir()
    lines = (prepared / "manifest.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace('"scheme":"300w68"', '"scheme":"aflw19"')
    (d / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_cli_exit_codes(prepared, faces68, tmp_path):
    lm, _ = faces68
    no_train = write_prepared(tmp_path / "nt", lm[:30], ["test"] * 30)
    degenerate = lm[:60].copy()
    degenerate[5] = 42.0
    degen = write_prepared(tmp_path / "dg", degenerate, ["train"] * 60)
    cases = {
        "fewer": (["balance", prepared, "--out", tmp_path / "o1", "--bins", 5000], 3, "fewer than the 5000 bins"),
        "no-train": (["balance", no_train, "--out", tmp_path / "o2"], 3, "no faces in the 'train' split"),
        "degenerate": (["balance", degen, "--out", tmp_path / "o3"], 3, "f0005"),
        "mixed": (["balance", _mixed(tmp_path, prepared), "--out", tmp_path / "o4"], 3, "mixed landmark schemes"),
        "missing": (["balance", tmp_path / "nowhere", "--out", tmp_path / "o5"], 3, "no manifest"),
        "same-out": (["balance", prepared, "--out", prepared], 2, "source folder"),
        "target": (["balance", prepared, "--out", tmp_path / "o6", "--target", "flat"], 2, "--target"),
        "bins": (["balance", prepared, "--out", tmp_path / "o7", "--bins", 1], 2, "--bins"),
        "plot": (["balance", prepared, "--out", tmp_path / "o8", "--plot", tmp_path / "h.xyz"], 2, "--plot"),
    }
    for name, (args, code, msg) in cases.items():
        r = invoke(*args)
        assert r.exit_code == code, (name, r.exit_code, r.stderr)
        assert r.stdout == "", name
        assert msg in r.stderr, (name, r.stderr)


def test_cli_on_a_prepared_synthetic_dataset(tmp_path):
    """make_dataset faces have no yaw: no pose component is found (exit 3); a forced component still balances a
    real `facelm prepare` folder, reusing its crop cache."""
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset

    csv, _ = make_dataset(tmp_path / "raw", n=24, size=64, seed=2)
    prepare(PrepareOptions(source=csv, out=tmp_path / "prep", fmt="csv", workers=1))
    r = invoke("balance", tmp_path / "prep", "--out", tmp_path / "bal")
    assert r.exit_code == 3 and "no pose component" in r.stderr
    r = invoke("balance", tmp_path / "prep", "--out", tmp_path / "bal", "--component", 0, "--bins", 4, "-q")
    assert r.exit_code == 0, r.stderr
    bal = load_manifest(tmp_path / "bal")
    assert not (tmp_path / "bal" / CROPS_NAME).exists()
    np.testing.assert_array_equal(np.asarray(bal.crops()), np.asarray(load_manifest(tmp_path / "prep").crops()))
    assert all(bal.image_path(i).is_file() for i in range(len(bal)))


# --- evaluate --pose-model ---------------------------------------------------------------------------------------

def test_evaluate_pose_bins(prepared, balanced, tmp_path):
    pm = balanced[0] / "pose_model.json"
    m = load_manifest(prepared).split("val")
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "landmarks": (m.landmarks[i] + rng.normal(0, 1, (68, 2))
                                                                   ).tolist()}) + "\n"
                             for i, s in enumerate(m.samples)))
    r = invoke("evaluate", "--data", prepared, "--split", "val", "--pose-model", pm, preds)
    assert r.exit_code == 0, r.stderr
    rec = json.loads(r.stdout)
    bins = rec["pose_bins"]
    assert sum(v["n"] for v in bins.values()) == rec["n"] == len(m)
    assert all(k.startswith("pose-bin-") and len(k) == len("pose-bin-00") for k in bins)
    assert list(bins) == sorted(bins)
    expect = histogram(assign_bins(load_pose_model(pm), m.landmarks), 9)
    assert {int(k[-2:]): v["n"] for k, v in bins.items()} == {j: int(c) for j, c in enumerate(expect) if c}
    assert "per pose bin" in r.stderr
    r = invoke("evaluate", "--data", prepared, "--split", "val", preds)
    assert "pose_bins" not in json.loads(r.stdout)
    # a pose model of another scheme, or no pose model at all: exit 4
    other = PoseModel.model_validate({**load_pose_model(pm).model_dump(), "scheme": "aflw19"})
    (tmp_path / "other.json").write_text(json.dumps(other.model_dump()))
    for bad in (tmp_path / "other.json", tmp_path / "none.json"):
        r = invoke("evaluate", "--data", prepared, "--split", "val", "--pose-model", bad, preds)
        assert r.exit_code == 4, r.stderr
    with pytest.raises(ModelError):
        load_pose_model(preds)


# --- real data (../shared/data; skipped when absent) -------------------------------------------------------------

@pytest.mark.shared_data
def test_mtfl_pose_coordinate_tracks_the_human_pose_label(shared_data):
    from facelm.datasets import read_faces

    faces = [f for f in read_faces(shared_data("mtfl-train"), "mtfl") if hasattr(f, "landmarks")]
    lm = np.array([f.landmarks for f in faces])
    label = np.array([f.attrs["pose"] for f in faces])  # 1 left profile .. 5 right profile
    model = fit_pose_model(lm, "5pt")
    rho = spearman(pose_coordinate(model, lm), label)
    print(f"\nmtfl-train: {len(lm)} faces, PC{model.component_index} "
          f"({100 * model.explained_variance:.1f}% var), Spearman rho(pose coordinate, pose label) = {rho:+.3f}")
    assert abs(rho) >= 0.7
    assert rho > 0  # MTFL's 'right' (4, 5) is our + direction (nose toward the image right)


@pytest.mark.shared_data
def test_ytf68_pose_histogram(shared_data):
    from facelm.datasets import read_faces

    faces = [f for f in read_faces(shared_data("ytf68-train"), "csv") if hasattr(f, "landmarks")]
    lm = np.array([f.landmarks for f in faces])
    model = fit_pose_model(lm, "300w68")
    c = pose_coordinate(model, lm)
    hist = histogram(coordinate_bins(model, c), model.bins)
    order = np.argsort(c)
    print(f"\nytf68-train: PC{model.component_index} ({100 * model.explained_variance:.1f}% var), asymmetry rho "
          f"{model.asymmetry_corr:.3f}, histogram {hist.tolist()}; most negative "
          f"{[faces[i].image.name for i in order[:4]]}, most positive {[faces[i].image.name for i in order[-4:]]}")
    assert model.asymmetry_corr > 0.9 and hist.min() > 0
    # turned faces: at the extremes the nose tip (30) is far from the outer eye corners' midpoint, on the side of
    # the sign, relative to the inter-ocular distance
    nose_off = (lm[:, 30, 0] - (lm[:, 36, 0] + lm[:, 45, 0]) / 2) / np.linalg.norm(lm[:, 45] - lm[:, 36], axis=1)
    assert np.all(nose_off[order[:20]] < -0.1) and np.all(nose_off[order[-20:]] > 0.1)
