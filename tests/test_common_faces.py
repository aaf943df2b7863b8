"""scripts/common_faces.py: every tool scored over one set of faces (those a reference tool found, those every
tool found)."""

from __future__ import annotations

import json

import pytest
from conftest import load_script


@pytest.fixture()
def per_face(tmp_path):
    rows = [("out/dlib-own.jsonl", "a", 0.02), ("out/dlib-own.jsonl", "b", float("inf")),
            ("out/dlib-own.jsonl", "c", 0.04), ("out/facelm.jsonl", "a", 0.03), ("out/facelm.jsonl", "b", 0.2),
            ("out/facelm.jsonl", "c", 0.01), ("out/mediapipe-own.5pt.jsonl", "a", 0.05),
            ("out/mediapipe-own.5pt.jsonl", "b", 0.06), ("out/mediapipe-own.5pt.jsonl", "c", float("inf"))]
    lines = ["model,id,image,subset,nme,status"] + [f"{m},{i},x.jpg,,{v},{'ok' if v < 1 else 'missing'}"
                                                    for m, i, v in rows]
    (tmp_path / "per-face-val.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_each_tool_is_scored_over_the_reference_tools_faces_and_the_common_ones(per_face, capsys):
    assert load_script("common_faces").main([str(per_face)]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = out["found by dlib-own"]
    assert ref["n"] == 2  # a and c
    assert ref["dlib-own"]["mean"] == 3.0 and ref["facelm"]["mean"] == 2.0
    assert ref["mediapipe-own"]["mean"] is None and ref["mediapipe-own"]["missed"] == 1  # a miss stays a failure
    both = out["found by every tool"]
    assert both["n"] == 1 and both["facelm"]["mean"] == 3.0 and both["mediapipe-own"]["median"] == 5.0


def test_bad_arguments_exit_2_naming_the_problem(per_face, tmp_path, capsys):
    mod = load_script("common_faces")
    assert mod.main([str(per_face), "--ref", "nope"]) == 2
    assert "--ref nope" in capsys.readouterr().err
    assert mod.main([str(tmp_path / "absent")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_tools_restricts_the_tools_and_their_common_faces(per_face, capsys):
    mod = load_script("common_faces")
    assert mod.main([str(per_face), "--tools", "facelm,mediapipe-own"]) == 0
    out = json.loads(capsys.readouterr().out)
    both = out["found by every tool"]
    assert both["n"] == 2 and set(both) == {"n", "facelm", "mediapipe-own"}  # a and b
    assert both["facelm"]["mean"] == 11.5
    assert mod.main([str(per_face), "--tools", "facelm,dlib"]) == 2
    assert "--tools dlib" in capsys.readouterr().err
