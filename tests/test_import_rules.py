"""The design's import rules, checked on the source (DESIGN.md §1).

- converters/ and profilers/ never import Qt or pyqtgraph (the engine is Qt-free);
- app/gui/ never imports a framework (those run in worker processes);
- torch, openvino, onnxruntime and nncf are never imported at module level in our packages,
  so registries, the CLI and the GUI start fast.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("app", "converters", "profilers")
HEAVY = {"torch", "openvino", "onnxruntime", "nncf"}
QT = {"PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6"}


def _sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py"))


def _imports(tree: ast.AST, module_level_only: bool) -> set[str]:
    nodes = tree.body if module_level_only else list(ast.walk(tree))  # type: ignore[attr-defined]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", _sources("converters", "profilers"), ids=str)
def test_engine_is_qt_free(path):
    assert not _imports(ast.parse(path.read_text()), module_level_only=False) & QT


@pytest.mark.parametrize("path", _sources(*PACKAGES), ids=str)
def test_no_heavy_import_at_module_level(path):
    assert not _imports(ast.parse(path.read_text()), module_level_only=True) & HEAVY


def test_gui_never_imports_frameworks():
    for path in _sources("app/gui") if (REPO / "app/gui").exists() else []:
        assert not _imports(ast.parse(path.read_text()), module_level_only=False) & HEAVY, path


def test_registries_load_without_frameworks():
    code = ("import sys, converters.formats, converters.analysis, app.cli;"
            "print(sorted(converters.formats.FORMATS));"
            "print(sorted(m for m in ('torch','openvino','onnxruntime','nncf','onnx') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    formats, loaded = r.stdout.strip().splitlines()
    assert formats == "['onnx', 'openvino', 'tflite', 'torch']"
    assert loaded == "[]"


# --- layers (DESIGN §1): model data <- passes/export <- profilers <- app -----------------------
# Every import counts, a lazy one inside a function included.
MODEL_DATA = ("converters.errors", "converters.graph", "converters.formats", "converters.analysis",
              "converters.workload", "converters.limits", "converters.summary")
FORBIDDEN = [  # (modules under this prefix, may not import these prefixes)
    ("converters", ("profilers", "app")),
    ("profilers", ("app",)),
    *[(m, ("converters.passes", "converters.export")) for m in MODEL_DATA],
    ("app.jobs", ("app.cli", "app.gui")),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _dotted_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("path", _sources(*PACKAGES), ids=str)
def test_layers_import_one_way(path):
    me = _module_name(path)
    wrong = sorted(
        f"{me} imports {imp} (forbidden: {rule})"
        for prefix, banned in FORBIDDEN if _under(me, prefix)
        for imp in _dotted_imports(path) for rule in banned if _under(imp, rule))
    assert not wrong, "\n".join(wrong)
