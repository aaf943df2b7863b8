"""Photometric training augmentation (``facelm train --photometric P``, facelm.augment): what is drawn, what each
change does to a crop, the same pixels on both training paths, the random stream of runs without it, and the
option's validation and record."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facelm.augment import PHOTOMETRIC, AugmentConfig, apply_photometric, draw_photometric, gaussian_kernel
from facelm.checkpoint import load_checkpoint
from facelm.cli import app
from facelm.config import TrainConfig
from facelm.crops import cache_geometry
from facelm.train import train
from facelm.train_batches import DevicePixels, crop_theta, occlude_on_device, photometric_on_device, warp_on_device
from facelm.train_data import load_sources, m_template, pick_batch, plan_batch, source_frames, warp_plan

ON = AugmentConfig.for_arch("cnn6", photometric=1.0)


def _row(**kw):
    """One draw_photometric row: on, brightness 0, contrast 1, saturation 1, gains 1, no noise, no JPEG,
    exposure 1."""
    r = {"on": 1.0, "bright": 0.0, "contrast": 1.0, "sat": 1.0, "gr": 1.0, "gg": 1.0, "gb": 1.0, "sigma": 0.0,
         "q": 0.0, "seed": 7.0, "exposure": 1.0}
    r.update(kw)
    return np.array([list(r.values())], dtype=np.float64)


def _face(seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((1, 64, 64, 3), (150, 110, 90), np.uint8)
    img[0, 16:48, 16:48] = rng.integers(40, 220, (32, 32, 3), dtype=np.uint8)
    return img


def test_draws_are_in_their_ranges_and_on_for_about_p_of_the_crops():
    ph = draw_photometric(4000, np.random.default_rng(0), AugmentConfig.for_arch("cnn6", photometric=0.5))
    assert ph.shape == (4000, 11)
    on = ph[:, 0] > 0
    assert 0.45 < on.mean() < 0.55
    for col, key in ((1, "brightness"), (2, "contrast"), (4, "gain"), (5, "gain"), (6, "gain"), (10, "exposure")):
        lo, hi = PHOTOMETRIC[key]
        assert lo <= ph[:, col].min() and ph[:, col].max() <= hi and ph[:, col].std() > 0.1 * (hi - lo)
    grey = ph[:, 3] == 0
    assert abs(grey.mean() - PHOTOMETRIC["grey"]) < 0.03
    assert ph[~grey, 3].min() >= PHOTOMETRIC["saturation"][0] and ph[~grey, 3].max() <= PHOTOMETRIC["saturation"][1]
    noisy, jpeg = ph[:, 7] > 0, ph[:, 8] > 0
    assert abs(noisy.mean() - PHOTOMETRIC["noise"]) < 0.03 and abs(jpeg.mean() - PHOTOMETRIC["jpeg"]) < 0.03
    assert PHOTOMETRIC["jpeg_quality"][0] <= ph[jpeg, 8].min() and ph[jpeg, 8].max() <= PHOTOMETRIC["jpeg_quality"][1]
    assert np.array_equal(ph[jpeg, 8], np.round(ph[jpeg, 8])) and len(np.unique(ph[jpeg, 8])) > 30
    assert len(np.unique(ph[:, 9])) > 3900  # one noise seed per crop


def test_nothing_is_drawn_when_off_so_runs_without_it_keep_their_random_stream():
    rng = np.random.default_rng(1)
    assert draw_photometric(8, rng, AugmentConfig.for_arch("cnn6")) is None
    assert draw_photometric(8, None, ON) is None
    assert rng.random() == np.random.default_rng(1).random()
    img = _face()
    assert np.array_equal(apply_photometric(img.copy(), None), img)
    assert np.array_equal(apply_photometric(img.copy(), _row(on=0.0, bright=30.0, sat=0.0)), img)


def test_each_change_does_what_it_says():
    img = _face()
    f = img.astype(np.float64)
    out = apply_photometric(img.copy(), _row()).astype(np.float64)
    assert np.array_equal(out, f)  # the identity row changes nothing
    out = apply_photometric(img.copy(), _row(bright=20.0)).astype(np.float64)
    assert np.abs(out - f - 20).max() <= 1
    out = apply_photometric(img.copy(), _row(exposure=0.5)).astype(np.float64)
    assert np.abs(out - 0.5 * f).max() <= 1  # exposure scales every grey level
    out = apply_photometric(img.copy(), _row(contrast=0.5)).astype(np.float64)
    assert abs(out.std() - 0.5 * f.std()) < 0.5 and abs(out.mean() - f.mean()) < 0.5
    out = apply_photometric(img.copy(), _row(sat=0.0))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])  # grey
    assert abs(out[..., 0].astype(float).mean() - (f @ [0.299, 0.587, 0.114]).mean()) < 0.5
    out = apply_photometric(img.copy(), _row(gr=1.1, gb=0.9)).astype(np.float64)
    assert abs(out[..., 0].mean() / f[..., 0].mean() - 1.1) < 0.01 and np.array_equal(out[..., 1], f[..., 1])
    a = apply_photometric(img.copy(), _row(sigma=8.0))
    b = apply_photometric(img.copy(), _row(sigma=8.0))
    c = apply_photometric(img.copy(), _row(sigma=8.0, seed=8.0))
    assert np.array_equal(a, b) and not np.array_equal(a, c)  # the crop's seed fixes its noise
    assert 6 < (a.astype(float) - f)[0, :10, :10].std() < 10
    out = apply_photometric(img.copy(), _row(q=15.0)).astype(np.float64)
    assert 0.5 < np.abs(out - f).mean() < 20 and abs(out.mean() - f.mean()) < 3  # blocky, not another picture
    out = apply_photometric(img.copy(), _row(q=15.0, gr=1.2)).astype(np.float64)  # RGB stays RGB through JPEG
    assert out[..., 0].mean() > f[..., 0].mean() + 10


def _sources(prepared):
    cfg = TrainConfig(data=str(prepared), out="unused", arch="cnn6").filled()
    sources, _, scheme, info, _ = load_sources(cfg)
    size, margin = cache_geometry(info)
    tpl = m_template(sources[0].lm_cache[sources[0].mask.all(1)], scheme)
    for s in sources:
        s.frames = source_frames(s, 1, scheme, tpl, size, margin)
    return sources


def test_both_training_paths_make_the_same_changes(data_dir):
    """The device path applies the CPU path's code to its own warp: the two differ by interpolation error, which
    contrast and JPEG can grow a little (measured: mean 0.01-0.1 grey levels)."""
    sources = _sources(data_dir)
    aug = AugmentConfig.for_arch("cnn6", occlude=0.3, photometric=1.0)
    pixels = DevicePixels(sources, torch.device("cpu"), resident=False)
    kernel = torch.from_numpy(gaussian_kernel(aug.blur_sigma)).float()
    for step in range(2):
        plan = plan_batch(sources, pick_batch(sources, step, 16, 0), 64, 68, 68,
                          np.random.default_rng([0, step, 0, 1]), aug)
        assert plan.photometric.shape == (16, 11) and plan.part(1, 2).photometric.shape == (8, 11)
        a = warp_plan(sources, plan, 64, aug.blur_sigma).astype(np.float32)
        plain = plan_batch(sources, pick_batch(sources, step, 16, 0), 64, 68, 68,
                           np.random.default_rng([0, step, 0, 1]), AugmentConfig.for_arch("cnn6", occlude=0.3))
        assert np.array_equal(plain.mats, plan.mats) and np.array_equal(plain.occluders, plan.occluders)
        assert np.abs(warp_plan(sources, plain, 64).astype(np.float32) - a).mean() > 5  # the changes are there
        x = warp_on_device(pixels.gather(plan), torch.from_numpy(crop_theta(plan.mats, sources[0].crops.shape[1],
                           64)), 64, torch.from_numpy(np.flatnonzero(plan.blur)), kernel)
        b = photometric_on_device(occlude_on_device(x, plan.occluders), plan.photometric).permute(0, 2, 3, 1)
        d = np.abs(a - b.numpy())
        assert d.mean() < 0.3, d.mean()
        assert np.array_equal(b.numpy(), np.round(b.numpy()))


def test_option_is_validated_and_recorded(data_dir, tmp_path):
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            TrainConfig(data=str(data_dir), out=str(tmp_path), photometric=bad)
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "x"), "--photometric",
                                 "2"])
    assert r.exit_code == 2 and "--photometric" in r.output and "probability" in r.output
    cfg = TrainConfig(data=str(data_dir), out=str(tmp_path / "run"), arch="cnn6", loss="wing", steps=4,
                      batch_size=4, width=0.25, warmup=1, lr=1e-3, val_every=4, log_every=2, threads=1, seed=0,
                      photometric=0.5).filled()
    train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["config"]["photometric"] == 0.5
    assert json.loads((tmp_path / "run" / "config.json").read_text())["photometric"] == 0.5


def test_the_cli_help_names_it():
    r = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "--photometric" in r.output
