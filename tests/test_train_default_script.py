"""scripts/train_default.sh (the recipe of the shipped models): it parses, and its re-reading rounds expand to the
commands that trained the shipped stage 2 (models/HISTORY.md, "Round H6" and "Round H7"). The functions are run
with ``train`` and ``pair_models`` stubbed out, so nothing is trained or exported."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_default.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(body: str, tmp_path: Path) -> list[str]:
    prog = f"""
set -euo pipefail
OUT={tmp_path}; S1_BATCH=32; PREV1=$OUT/runs/s1; PREV2=$OUT/runs/s2h5
eval "$(sed -n '/^pair_models() {{/,/^}}/p; /^reread_round() {{/,/^}}/p' {SCRIPT})"
log() {{ echo "$*" >> "$OUT/calls.log"; }}
train() {{ log "train $* | ${{SOURCES[*]}}"; }}
pair_models() {{ log "pair_models $*"; }}
python() {{ log "pseudo_label $*"; }}
facelm() {{ log "facelm $*"; mkdir -p "$4"; : > "$4/manifest.jsonl"; }}
{body}
log "PREV2=$PREV2"
"""
    subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True)
    return (tmp_path / "calls.log").read_text().splitlines()


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_reread_round_reads_with_the_pair_so_far_then_trains_from_prev2(tmp_path):
    lines = _run('reread_round s2h7p "$OUT/pair-3z" "$OUT/pp7" r 98 8000', tmp_path)
    # the pair is exported once, before the first set is read, and every set is read with it
    assert lines[0] == f"pair_models {tmp_path}/pair-3z"
    assert {ln for ln in lines if ln.startswith("pair_models")} == {lines[0]}
    reads = [ln for ln in lines if ln.startswith("pseudo_label")]
    assert [r.split()[2] for r in reads] == [f"{tmp_path}/{s}" for s in ("mtfl", "utk", "ytf")]
    assert all(f"--models {tmp_path}/pair-3z" in r and f"--out {tmp_path}/pp7" in r for r in reads)
    prepares = [ln.split() for ln in lines if ln.startswith("facelm prepare")]
    assert [(a[2], a[4]) for a in prepares] == [(f"{tmp_path}/pp7/{s}.68.csv", f"{tmp_path}/{s}68r")
                                                for s in ("mtfl", "utk", "ytf")]
    train = next(ln for ln in lines if ln.startswith("train "))
    cmd, sources = train.split(" | ")
    assert cmd.startswith("train s2h7p ")
    assert f"--init {tmp_path}/runs/s2h5/last.pt" in cmd and f"--stage1 {tmp_path}/runs/s1/last.pt" in cmd
    assert "--seed 98" in cmd and "--steps 8000" in cmd and "--input-size 128" in cmd
    data = [tok for i, tok in enumerate(sources.split()) if sources.split()[i - 1] == "--data"]
    weights = [float(tok) for i, tok in enumerate(sources.split()) if sources.split()[i - 1] == "--weight"]
    assert [Path(d).name for d in data] == ["w300", "mtfl", "mtfl68r", "helen29", "infan", "utk68r", "ytf68r"]
    assert weights == [1, 0.7, 0.5, 0.2, 0.15, 0.3, 0.2]
    assert lines[-1] == f"PREV2={tmp_path}/runs/s2h7p"


def test_reread_round_keeps_sets_already_read(tmp_path):
    for s in ("mtfl", "utk", "ytf"):
        (tmp_path / f"{s}68q").mkdir()
        (tmp_path / f"{s}68q" / "manifest.jsonl").write_text("")
    lines = _run('reread_round s2h6p "$OUT/pair-3y" "$OUT/pp6" q 97 100', tmp_path)
    assert not [ln for ln in lines if ln.startswith(("pair_models", "pseudo_label", "facelm"))]
    assert lines[0].startswith("train s2h6p ") and "--seed 97" in lines[0]
