"""The engine's public surface: every exported name resolves, evaluate uses no other, and the config
models load without torch (the CLI reads their defaults for its help)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import medtl.engine
import medtl.evaluate

EVALUATE = Path(medtl.evaluate.__file__).parent


def test_every_exported_name_resolves():
    for name in medtl.engine.__all__:
        assert getattr(medtl.engine, name) is not None, name
    # `run` is the function, even after its module was imported
    importlib.import_module("medtl.engine.runner")
    assert callable(medtl.engine.run) and medtl.engine.run.__name__ == "run"


def test_evaluate_imports_only_exported_engine_names():
    used = set()
    for path in EVALUATE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "medtl.engine":
                used |= {alias.name for alias in node.names}
    assert used and used <= set(medtl.engine.__all__)


def test_run_config_and_record_load_without_torch():
    code = "import sys, medtl.engine as e; e.RunConfig; e.RunMetrics; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
