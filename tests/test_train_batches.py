"""The training batches (facelm.train_batches): the device path against OpenCV on the same draws, the landmark /
crop agreement, bit-for-bit resume, the device cache, and the compute settings a run prints and stores."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facelm.augment import AugmentConfig, OCCLUDER_SIDE, draw_occluders, gaussian_kernel, render_batch
from facelm.checkpoint import load_checkpoint
from facelm.cli import app
from facelm.config import TrainConfig
from facelm.crops import cache_geometry, face_frames, frame_matrices
from facelm.errors import UsageError
from facelm.prepare import PrepareOptions, prepare
from facelm.train import resolve_precision, train
from facelm.train_batches import BatchSampler, DevicePixels, crop_theta, occlude_on_device, warp_on_device
from facelm.train_data import (
    load_sources,
    m_template,
    pick_batch,
    plan_batch,
    render_sources,
    source_frames,
    warp_plan,
)

# The two warps differ by interpolation error only: OpenCV's bilinear weights are fixed point (1/32 px), torch's
# are float. Measured on 512 augmented w300 crops: mean |difference| 0.006 (CNN-6) / 0.003 (CNN-7) grey levels, max 1.
MEAN_DIFF, MAX_DIFF = 0.05, 2.0


def _cfg(data_dir, out, **kw):
    base = dict(data=str(data_dir), out=str(out), arch="cnn6", loss="wing", steps=20, batch_size=8, width=0.25,
                warmup=5, lr=2e-3, val_every=10, log_every=5, threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base).filled()


def _sources(prepared, arch="cnn6"):
    cfg = TrainConfig(data=str(prepared), out="unused", arch=arch).filled()
    sources, _, scheme, info, _ = load_sources(cfg)
    size, margin = cache_geometry(info)
    tpl = m_template(sources[0].lm_cache[sources[0].mask.all(1)], scheme)
    for s in sources:
        s.frames = source_frames(s, 2 if arch == "cnn7" else 1, scheme, tpl, size, margin)
    return sources, scheme


def _both_warps(sources, arch, steps, batch=16, occlude=0.0):
    """(OpenCV crops, device-path crops) of the same plans, (N, S, S, 3) float32."""
    size = 128 if arch == "cnn7" else 64
    aug = AugmentConfig.for_arch(arch, occlude=occlude)
    cache = sources[0].crops.shape[1]
    pixels = DevicePixels(sources, torch.device("cpu"), resident=False)
    kernel = torch.from_numpy(gaussian_kernel(aug.blur_sigma)).float()
    a, b = [], []
    for step in range(steps):
        rng = np.random.default_rng([0, step, 0, 1])
        plan = plan_batch(sources, pick_batch(sources, step, batch, 0), size, 68, 68, rng, aug)
        assert plan.blur.any() and not plan.blur.all()
        a.append(warp_plan(sources, plan, size, aug.blur_sigma).astype(np.float32))
        x = warp_on_device(pixels.gather(plan), torch.from_numpy(crop_theta(plan.mats, cache, size)), size,
                           torch.from_numpy(np.flatnonzero(plan.blur)), kernel)
        x = occlude_on_device(x, plan.occluders)
        b.append(x.permute(0, 2, 3, 1).numpy())
    return np.concatenate(a), np.concatenate(b)


@pytest.mark.parametrize("arch", ["cnn6", "cnn7"])
def test_device_warp_matches_opencv_on_the_same_draws(data_dir, arch):
    sources, _ = _sources(data_dir, arch)
    a, b = _both_warps(sources, arch, steps=3)
    d = np.abs(a - b)
    assert d.mean() < MEAN_DIFF and d.max() <= MAX_DIFF
    assert np.array_equal(b, np.round(b))  # integer grey levels, as the uint8 crops of the CPU path


@pytest.mark.shared_data
def test_device_warp_matches_opencv_on_real_faces(shared_data, tmp_path):
    prepare(PrepareOptions(source=shared_data("w300-train"), out=tmp_path / "w300", limit=48, workers=1))
    for arch in ("cnn6", "cnn7"):
        sources, _ = _sources(tmp_path / "w300", arch)
        a, b = _both_warps(sources, arch, steps=3)
        d = np.abs(a - b)
        assert d.mean() < MEAN_DIFF and d.max() <= MAX_DIFF, (arch, d.mean(), d.max())


def test_device_blur_is_opencvs():
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    img[0, 10:30, 10:30] = 255  # an edge, and a noisy background
    ident = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    got = warp_on_device(torch.from_numpy(img), torch.from_numpy(crop_theta(ident, 40, 40)), 40,
                         torch.tensor([0]), torch.from_numpy(gaussian_kernel(1.0)).float())
    ref = cv2.GaussianBlur(img[0], (0, 0), 1.0)
    assert np.abs(got[0].permute(1, 2, 0).numpy() - ref).max() <= 1


def test_device_warp_landmarks_follow_the_pixels():
    """The landmark / crop agreement of the device path: a dot lands where its landmark is mapped to."""
    xy = np.array([[120.0, 80.0]])
    img = np.zeros((1, 192, 192, 3), np.uint8)
    img[0, 79:82, 119:122] = 255
    frames = face_frames(1, 192, 1.8)
    rng = np.random.default_rng(3)
    aug = AugmentConfig(rotate=30, flip_p=0.5, perturb=0.05, blur_p=0.0)
    flipped = 0
    for _ in range(20):
        mats, flips = frame_matrices(frames, 64, rng, aug)
        flipped += int(flips[0])
        _, lm, _ = render_batch(img, np.array([0]), xy[None], mats, flips, np.array([0]), 64)
        out = warp_on_device(torch.from_numpy(img), torch.from_numpy(crop_theta(mats, 192, 64)), 64, None,
                             torch.ones(1))[0, 0].numpy()
        ys, xs = np.nonzero(out > 30)
        w = out[ys, xs]
        assert abs((xs * w).sum() / w.sum() - lm[0, 0, 0]) < 0.5
        assert abs((ys * w).sum() / w.sum() - lm[0, 0, 1]) < 0.5
    assert 0 < flipped < 20


def test_occluders_are_drawn_in_range_and_painted_alike_on_both_paths(data_dir):
    """``--occlude``: rectangles 15-50% of the side inside the crop, one colour each, on about P of the crops;
    the device path paints the same pixels as the CPU path; with occlusion off nothing is drawn, so the random
    stream of runs without it is unchanged."""
    aug = AugmentConfig.for_arch("cnn6", occlude=0.5)
    occ = draw_occluders(4000, 64, np.random.default_rng(0), aug)
    on = occ[:, 2] > occ[:, 0]
    assert 0.45 < on.mean() < 0.55
    w, h = (occ[on, 2] - occ[on, 0]), (occ[on, 3] - occ[on, 1])
    lo, hi = round(OCCLUDER_SIDE[0] * 64), round(OCCLUDER_SIDE[1] * 64)
    assert w.min() >= lo and w.max() <= hi and h.min() >= lo and h.max() <= hi
    assert occ[:, :4].min() >= 0 and occ[:, 2].max() <= 64 and occ[:, 3].max() <= 64
    assert occ[:, 4:].min() >= 0 and occ[:, 4:].max() <= 255 and len(np.unique(occ[on, 4])) > 200
    rng = np.random.default_rng(1)
    assert draw_occluders(8, 64, rng, AugmentConfig.for_arch("cnn6")) is None
    assert rng.random() == np.random.default_rng(1).random()  # nothing drawn when off

    sources, _ = _sources(data_dir)
    a, b = _both_warps(sources, "cnn6", steps=2, occlude=1.0)
    d = np.abs(a - b)
    assert d.mean() < MEAN_DIFF and d.max() <= MAX_DIFF
    plan = plan_batch(sources, pick_batch(sources, 0, 16, 0), 64, 68, 68, np.random.default_rng([0, 0, 0, 1]),
                      AugmentConfig.for_arch("cnn6", occlude=1.0))
    crops = warp_plan(sources, plan, 64)
    for k in range(len(plan)):  # every crop carries its rectangle, in its colour
        x0, y0, x1, y1 = plan.occluders[k, :4]
        assert x1 > x0 and np.all(crops[k, y0:y1, x0:x1] == plan.occluders[k, 4:7])
    assert plan.part(1, 2).occluders.shape == (8, 7)


def test_cpu_path_renders_the_draws_of_render_batch(data_dir):
    """The plan keeps today's random stream: frame_matrices then the blur draw, group by group."""
    sources, scheme = _sources(data_dir)
    aug = AugmentConfig.for_arch("cnn6")
    groups = pick_batch(sources, 4, 8, 0)
    imgs, lm, mask, maps = render_sources(sources, groups, 64, 68, 68, np.random.default_rng([0, 4, 0, 1]), aug)
    rng = np.random.default_rng([0, 4, 0, 1])
    src, b = sources[0], groups[0][1]
    mats, flips = frame_matrices(src.frames[b], 64, rng, aug)
    ref, ref_lm, ref_mask = render_batch(src.crops, src.index[b], src.lm_cache[b], mats, flips,
                                         np.array(scheme.flip_perm), 64, rng, aug)
    assert np.array_equal(imgs, ref) and np.array_equal(lm, ref_lm) and maps is None
    usable = src.mask[b].copy()
    usable[flips] = usable[flips][:, list(scheme.flip_perm)]
    assert flips.any() and np.array_equal(mask, ref_mask & usable)


def test_device_cache_gives_the_batches_of_the_streamed_path(data_dir):
    sources, _ = _sources(data_dir)
    cfg = _cfg(data_dir, "unused", augment_on="device")
    streamed = BatchSampler(cfg, sources, 64, 68, 68, torch.device("cpu"))
    held = BatchSampler(cfg.model_copy(update={"device_cache": True}), sources, 64, 68, 68, torch.device("cpu"))
    assert held.settings()["device_cache"] and not streamed.settings()["device_cache"]
    for s in (0, 5):
        a, b = streamed.make(s), held.make(s)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)
    assert a.x.is_contiguous(memory_format=torch.channels_last)
    streamed.close()
    held.close()


def test_ranks_share_out_the_global_batch(data_dir):
    sources, _ = _sources(data_dir)
    cfg = _cfg(data_dir, "unused", augment_on="device")
    one = BatchSampler(cfg, sources, 64, 68, 68, torch.device("cpu")).make(3)
    parts = [BatchSampler(cfg, sources, 64, 68, 68, torch.device("cpu"), rank=r, world=2).make(3) for r in (0, 1)]
    assert torch.equal(torch.cat([p.x for p in parts]), one.x)
    assert torch.equal(torch.cat([p.y for p in parts]), one.y)


def test_device_path_trains_and_resumes_bit_for_bit(data_dir, tmp_path):
    full = train(_cfg(data_dir, tmp_path / "a", augment_on="device"))
    losses = [r["loss"] for r in full.history if "loss" in r]
    assert losses[-1] < losses[0]
    assert full.summary["setup"]["augment_on"] == "device"

    def stop_at_10(rec):
        if rec.get("step") == 10 and "loss" in rec:
            raise KeyboardInterrupt

    assert train(_cfg(data_dir, tmp_path / "b", augment_on="device"), on_log=stop_at_10).interrupted
    train(_cfg(data_dir, tmp_path / "b", augment_on="device"), resume=True)
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compute_settings_are_printed_and_stored(data_dir, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(out), "--steps", "4",
                                 "--batch-size", "8", "--width", "0.25", "--threads", "1", "--val-every", "4",
                                 "--no-channels-last", "--augment-on", "device", "--loader-threads", "2"])
    assert r.exit_code == 0, r.stderr
    want = resolve_precision("auto", torch.device("cpu"))  # bf16 on a CPU that has it natively, else fp32
    assert (f"setup: precision {want}, channels-last off, compile off, augment on device (device cache off), "
            "2 loader thread(s)") in r.stderr
    setup = json.loads(r.stdout)["setup"]
    assert setup == {"device": "cpu", "world": 1, "threads": 1, "precision": want, "channels_last": False,
                     "compile": False, "augment_on": "device", "device_cache": False, "loader_threads": 2}
    assert load_checkpoint(out / "last.pt")["setup"] == setup
    assert json.loads((out / "summary.json").read_text())["setup"] == setup
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["augment_on"] == "device" and cfg["channels_last"] is False and cfg["precision"] == "auto"


def test_compile_compiles_the_training_module(data_dir, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(module, *a, **k):
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    res = train(_cfg(data_dir, tmp_path / "run", steps=2, val_every=2, compile=True))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    assert res.summary["setup"]["compile"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_fp16_without_cuda_and_bad_compute_options_are_usage_errors(data_dir, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="fp16"):
        train(_cfg(data_dir, tmp_path / "a", precision="fp16"))
    with pytest.raises(UsageError, match="device_cache"):
        _cfg(data_dir, tmp_path / "b", augment_on="cpu", device_cache=True)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UsageError, match="batch_size"):
        train(_cfg(data_dir, tmp_path / "c"))
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "d"), "--augment-on",
                                 "gpu"])
    assert r.exit_code == 2 and "--augment-on" in r.stderr


def test_fp16_with_a_gradient_scaler_trains_and_resumes_its_scaler(data_dir, tmp_path, monkeypatch):
    """The fp16 path (CUDA GPUs without bf16), run here through CPU fp16 autocast: the scaler scales the loss, its
    state is saved with the checkpoints and restored on resume."""
    import facelm.train as T

    monkeypatch.setattr(T, "resolve_precision", lambda precision, device: "fp16")
    full = train(_cfg(data_dir, tmp_path / "a"))
    assert full.summary["setup"]["precision"] == "fp16"
    losses = [r["loss"] for r in full.history if "loss" in r]
    assert losses[-1] < losses[0]
    ck = load_checkpoint(tmp_path / "a" / "last.pt")
    assert 1 < ck["scaler"]["scale"] < 2.0 ** 16  # it started at 2^16 and backed off on overflowing steps

    def stop_at_10(rec):
        if rec.get("step") == 10 and "loss" in rec:
            raise KeyboardInterrupt

    train(_cfg(data_dir, tmp_path / "b"), on_log=stop_at_10)
    assert "scaler" in load_checkpoint(tmp_path / "b" / "last.pt")
    train(_cfg(data_dir, tmp_path / "b"), resume=True)
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["scaler"] == ck["scaler"]
    assert all(torch.equal(ck["model"][k], b["model"][k]) for k in ck["model"])


def test_losses_are_read_at_checks_and_at_least_every_1000_steps(tmp_path):
    from facelm.train import _LossWatch
    from facelm.train_run import DivergedError, RunFolder

    run = RunFolder(_cfg(tmp_path, tmp_path / "run"), None, 0, None)
    watch = _LossWatch(run)
    for s in range(999):
        watch.add(s, torch.tensor(2.0))
    assert len(watch.pending) == 999
    watch.add(999, torch.tensor(4.0))
    assert not watch.pending and watch.mean() == pytest.approx(2.002)
    watch.add(1000, torch.tensor(1.0))
    watch.add(1001, torch.tensor(float("nan")))
    with pytest.raises(DivergedError, match="at step 1001"):
        watch.check()
