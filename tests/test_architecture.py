"""The import rule of docs/architecture.md, checked on the source (ast, so imports inside functions count too).

* The wings -- training, export, evaluation, the prediction runtime -- stand side by side on the shared floor:
  none imports another.
* ``detectors/`` and ``runtime/`` import nothing from training or export (nor the training augmentation).
* The floor imports no wing. The CLI (``facelm/cli``) may import anything.
* The Python front door (``facelm.api``, ``facelm.integrations``) stands on the prediction wing: it may import the
  runtime and the floors, but nothing of training, export or evaluation (no torch); no floor or wing imports it,
  except the package itself (``facelm/__init__.py``, lazily).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facelm"

WINGS = {
    "train": ("facelm.train", "facelm.train_data", "facelm.train_batches", "facelm.train_run",
              "facelm.heatmap.objective", "facelm.config"),
    "export": ("facelm.export", "facelm.export_formats", "facelm.export_int8"),
    "evaluate": ("facelm.evaluate", "facelm.evaluate_report"),
    "runtime": ("facelm.runtime",),
}
# what the prediction side (runtime/ and detectors/) may not use: training, export, evaluation, the training
# augmentation and the torch-side model loading (facelm.transforms is the old shim over the augmentation)
TRAINING_SIDE = (*WINGS["train"], *WINGS["export"], *WINGS["evaluate"], "facelm.augment", "facelm.transforms",
                 "facelm.checkpoint", "facelm.manifest_predict")


# the Python front door: above the prediction wing, beside the CLI
FRONT = ("facelm.api", "facelm.integrations")


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every ``facelm`` module ``source`` imports, at any depth (``from a import b`` counts as ``a`` and, when
    ``b`` is a submodule, ``a.b``; relative imports resolved against ``module``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "facelm" or m.startswith("facelm.")}


def package_imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: imported facelm modules}`` for every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        out[name] = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    return out


def violations(graph: dict[str, set[str]]) -> list[str]:
    """The arrows of ``graph`` that break the rule, as ``"importer -> imported (why)"``."""
    bad = []
    for mod, deps in sorted(graph.items()):
        if _within(mod, ("facelm.cli",)) or mod == "facelm.__main__":
            continue
        if _within(mod, FRONT):
            bad += [f"{mod} -> {dep} (the front door imports training/export/evaluation code)"
                    for dep in sorted(deps) if _within(dep, TRAINING_SIDE)]
            continue
        if mod != "facelm":
            bad += [f"{mod} -> {dep} (only the CLI and the package itself use the front door)"
                    for dep in sorted(deps) if _within(dep, FRONT)]
        wing = next((w for w, prefixes in WINGS.items() if _within(mod, prefixes)), None)
        for dep in sorted(deps):
            dep_wing = next((w for w, prefixes in WINGS.items() if _within(dep, prefixes)), None)
            if wing is not None and dep_wing is not None and dep_wing != wing:
                bad.append(f"{mod} -> {dep} (the {wing} wing imports the {dep_wing} wing)")
            elif wing is None and dep_wing is not None:
                bad.append(f"{mod} -> {dep} (the floor imports the {dep_wing} wing)")
            if _within(mod, ("facelm.runtime", "facelm.detectors")) and _within(dep, TRAINING_SIDE) \
                    and dep_wing is None:
                bad.append(f"{mod} -> {dep} (the prediction side imports training/export code)")
            if _within(mod, ("facelm.detectors",)) and _within(dep, WINGS["runtime"]):
                bad.append(f"{mod} -> {dep} (detectors sit below the runtime)")
    return bad


def test_no_wing_imports_another_and_the_floor_imports_no_wing():
    graph = package_imports()
    assert "facelm.runtime.pipeline" in graph and "facelm.train" in graph  # the walk found the package
    assert violations(graph) == []


# The wrong-way arrows facelm had before the floor of issue 12 (crops, augment, modelfile, ort, checkpoint,
# manifest_predict) was built: each, put back into today's graph, must be caught.
OLD_ARROWS = [
    ("facelm.runtime.pipeline", "facelm.transforms"),  # the runtime took its crops from the augmentation module
    ("facelm.detectors.boxmap", "facelm.export"),  # ONNX metadata from the export wing
    ("facelm.detectors.yunet", "facelm.runtime.session"),  # a session factory from the runtime
    ("facelm.export", "facelm.train"),  # load_model_from_checkpoint, _load_split, validation_nme
    ("facelm.evaluate", "facelm.train"),  # predict_manifest, load_model_from_checkpoint, pick_device
    ("facelm.evaluate", "facelm.export"),  # onnx_predict_manifest, load_onnx_model, check_meta_matches
    # the front door must stay torch-free, and below it nothing may reach up to it
    ("facelm.api", "facelm.checkpoint"),
    ("facelm.integrations.ray", "facelm.train"),
    ("facelm.runtime.pipeline", "facelm.api"),
]


@pytest.mark.parametrize("importer,imported", OLD_ARROWS)
def test_the_old_wrong_way_arrows_would_fail(importer, imported):
    graph = package_imports()
    assert importer in graph
    graph[importer] = graph[importer] | {imported}
    assert any(v.startswith(f"{importer} -> {imported} ") for v in violations(graph))


def test_function_level_and_relative_imports_count():
    src = "def f():\n    from facelm.export import META_KEY\n    from ..runtime import session\n"
    found = imports_of(src, "facelm.detectors.boxmap")
    assert {"facelm.export", "facelm.runtime", "facelm.runtime.session"} <= found


def test_facelm_help_loads_neither_torch_nor_onnx():
    """``facelm --help`` (and every command's start) stays light: torch, onnx and onnxruntime are imported by
    the commands that use them, not by the CLI's module imports."""
    import subprocess
    import sys

    code = ("import sys\nfrom facelm.cli import main\nsys.argv = ['facelm', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=PACKAGE.parent)
    assert "Usage" in r.stdout, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "[]"


_FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z0-9-]*")


def flag_worded_messages(source: str) -> list[tuple[int, str]]:
    """String pieces of ``raise ...(...)`` messages that spell a command-line flag (``--name``) instead of the
    library's parameter (`` `name` ``, which the CLI turns into its flag: ``cli/_common.cli_message``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and _FLAG.search(sub.value):
                    found.append((sub.lineno, sub.value))
    return found


def test_library_errors_name_parameters_not_flags():
    bad = [f"{p.relative_to(PACKAGE.parent)}:{line}: {text!r}" for p in sorted(PACKAGE.rglob("*.py"))
           if "cli" not in p.relative_to(PACKAGE).parts
           for line, text in flag_worded_messages(p.read_text())]
    assert not bad, "library messages phrased in CLI flags:\n" + "\n".join(bad)


def test_flag_check_catches_a_flag_worded_message():
    src = 'def f(n):\n    raise ValueError(f"--stages must be 1 or 2, got {n}")\n'
    assert flag_worded_messages(src) == [(2, "--stages must be 1 or 2, got ")]
    assert flag_worded_messages('raise ValueError("`stages` must be 1 or 2")\n') == []


def test_library_modules_and_functions_stay_short():
    """docs/architecture.md: no library module over 500 lines, no function over 80 (the CLI's Typer signatures,
    one option per line, are exempt)."""
    long = []
    for p in sorted(PACKAGE.rglob("*.py")):
        if "cli" in p.relative_to(PACKAGE).parts:
            continue
        src = p.read_text()
        if src.count("\n") > 500:
            long.append(f"{p.name}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{p.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, "split these up:\n" + "\n".join(long)


def test_the_front_door_loads_no_torch():
    """``import facelm`` loads neither torch nor onnxruntime; a ``facelm.Landmarker`` loads onnxruntime, never
    torch (the predict path is onnxruntime + OpenCV)."""
    import subprocess
    import sys

    code = ("import sys\nimport facelm\n"
            "heavy = lambda: sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules)\n"
            "print(heavy())\nlm = facelm.Landmarker(device='cpu', threads=1)\nprint(heavy())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=PACKAGE.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "['onnxruntime']"]
