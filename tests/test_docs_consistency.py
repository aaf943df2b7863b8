"""docs/cli.md says what the commands do: every option of every ``--help`` is documented in its command's section,
and the behaviours the reference promises hold (``bench --device cuda:N``, one NME per precision in export's
table, the evaluate record kinds, the ``--val-every`` default)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from facelm.cli import app

REPO = Path(__file__).resolve().parents[1]
CLI_MD = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
runner = CliRunner()


def _sections() -> dict[str, str]:
    """``{command: its section of docs/cli.md}``."""
    parts = re.split(r"\n## `facelm ", CLI_MD)[1:]
    return {p.split("`", 1)[0]: p for p in parts}


def _commands() -> dict:
    return typer.main.get_command(app).commands


def _options(cmd) -> list[list[str]]:
    """Each option's names (Typer's own click classes: told apart by ``param_type_name``)."""
    found = [p.opts + p.secondary_opts for p in cmd.params
             if p.param_type_name == "option" and "--help" not in p.opts]
    assert found, f"{cmd.name}: no options found"
    return found


def _mentions(text: str, names: list[str]) -> bool:
    return any(re.search(re.escape(n) + r"(?![\w-])", text) for n in names)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_has_a_row_in_its_commands_table(name):
    section = _sections().get(name)
    assert section is not None, f"docs/cli.md has no section for facelm {name}"
    first_cells = [row.split("|")[1] for row in section.splitlines() if row.startswith("| `")]
    missing = [o[0] for o in _options(_commands()[name]) if not any(_mentions(c, o) for c in first_cells)]
    assert not missing, f"facelm {name}: options without a row in docs/cli.md: {missing}"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_a_complete_synopsis_names_every_option(name):
    synopsis = re.search(r"```\n(facelm .*?)```", _sections()[name], re.DOTALL).group(1)
    if synopsis.rstrip().endswith("..."):
        return  # the synopsis says it leaves options out
    missing = [o[0] for o in _options(_commands()[name]) if not _mentions(synopsis, o)]
    assert not missing, f"facelm {name}: options missing from the synopsis in docs/cli.md: {missing}"


def test_evaluate_record_kinds_are_documented():
    from facelm.evaluate import MODEL_KINDS

    protocols = (REPO / "docs" / "protocols.md").read_text(encoding="utf-8")
    kinds = set(MODEL_KINDS.values())
    assert kinds == {"checkpoint", "onnx", "predictions"}
    line = next(ln for ln in CLI_MD.splitlines() if "The keys are `model`, `kind`" in ln)
    row = next(ln for ln in protocols.splitlines() if ln.startswith("| `model`, `kind` |"))
    for k in kinds:
        assert f"`{k}`" in line and f"`{k}`" in row, k


def test_val_every_help_gives_the_default_the_config_uses():
    from facelm.config import TrainConfig

    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert "max(50, steps / 10)" in r.stdout
    assert "max(50, steps / 10)" in CLI_MD
    for steps in (10, 3000, 120_000):
        cfg = TrainConfig(data="d", out="o", steps=steps).filled()
        assert cfg.val_every == max(50, steps // 10)


def test_bench_accepts_a_cuda_device_index(monkeypatch, tmp_path):
    """docs/cli.md: `--device` is auto, cpu, cuda or cuda:N in every command; bench measures CUDA device N."""
    import facelm.ort
    from facelm.cli import bench

    seen = {}
    monkeypatch.setattr(facelm.ort, "cuda_usable", lambda dev=0: (True, ""))
    monkeypatch.setattr(bench, "_bench", lambda *a: seen.update(provider_sets=a[8], cuda_ok=a[9]))
    r = runner.invoke(app, ["bench", str(tmp_path), "--device", "cuda:1", "-q"])
    assert r.exit_code == 0, r.output
    assert seen["provider_sets"] == [("CUDAExecutionProvider", [("CUDAExecutionProvider", {"device_id": 1}),
                                                                "CPUExecutionProvider"])]
    r = runner.invoke(app, ["bench", str(tmp_path), "--device", "cuda:x"])
    assert r.exit_code == 2 and "--device must be auto, cpu, cuda or cuda:N" in r.output


@pytest.mark.parametrize("precision, want", [("fp32", "fp32 0.10000; "),
                                             ("fp16w", "fp32 0.10000, fp16w 0.10010 (+0.10%); ")])
def test_export_table_shows_each_precisions_nme_once(monkeypatch, precision, want):
    import facelm.cli.export as export_cli

    rows = {}
    monkeypatch.setattr(export_cli, "table", lambda title, cols, r: rows.update(dict(r)))
    nme = {"split": "val", "faces": 19, "normaliser": "inter-ocular", "crops": "ground-truth face square",
           "fp32": 0.1}
    if precision != "fp32":
        nme.update({precision: 0.1001, "relative_change": 0.001})
    summary = {"parity": {"tolerance": 0.01, "max_abs_px": 1e-6, "n_crops": 19, "source": "data"},
               "arch": "cnn6", "stage": 1, "scheme": "300w68", "input_size": [64, 64], "precision": precision,
               "opset": 17, "dynamic_batch": True, "bytes": 300_000, "fp32_bytes": 300_000, "opencv_dnn": False,
               "opencv_dnn_error": "-", "nme": nme, "out": "x.onnx", "written": True, "checkpoint": "best.pt"}
    export_cli._show(summary)
    assert rows["NME (val, 19 faces)"].startswith(want), rows["NME (val, 19 faces)"]
