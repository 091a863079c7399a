"""Every example spec plans: `medtl sweep plan` on a copy of examples/ with stand-in stores, split files
and checkpoints where the specs expect them (../../stores, ../../weights relative to each spec)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.data.splits import split_store
from medtl.io.store import SampleRecord, StoreWriter
from medtl_cli.main import app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/sweep.toml"))
runner = CliRunner()


def _paths(value, key: str):
    """Every path-like string a spec value holds (stores, split files, checkpoints)."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, str) and v.startswith("../"):
            yield key, v


def _stand_in_store(path: Path) -> None:
    rng = np.random.default_rng(0)
    with StoreWriter(
        path, task="classification", image_shape=(1, 16, 16), class_names=["a", "b"], label_shape=()
    ) as w:
        for i in range(20):
            image = rng.normal(0.5, 0.1, (1, 1, 16, 16)).astype(np.float32)
            w.add(f"u{i}", image, [SampleRecord(f"P{i}", f"{i}.png")], labels=np.array([i % 2]))
        w.finish()


def _stand_ins(spec: Path) -> None:
    data = tomllib.loads(spec.read_text())
    tables = [data.get("base", {}), data.get("grid", {}), *data.get("zip", [])]
    wanted = [(k, v) for t in tables for key, value in t.items() for k, v in _paths(value, key)]
    for _, rel in [(k, v) for k, v in wanted if k == "data"]:
        store = (spec.parent / rel).resolve()
        if not store.exists():
            _stand_in_store(store)
    for key, rel in wanted:
        target = (spec.parent / rel).resolve()
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if key == "split":
            store = target.parent / re.sub(r"(\.fold\d+|\.split)?\.json$", "", target.name)
            fold = re.search(r"fold(\d+)", target.name)
            test_fold = (int(fold.group(1)) + 1) % 5 if fold else 1
            val_fold = int(fold.group(1)) if fold else 0
            split_store(store, folds=5, val_fold=val_fold, test_fold=test_fold, out=target)
        elif key == "init":
            target.write_bytes(b"stand-in checkpoint " + target.name.encode())


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_spec_plans(tmp_path, name):
    copy = tmp_path / "examples" / name
    shutil.copytree(ROOT / "examples" / name, copy)
    _stand_ins(copy / "sweep.toml")
    result = runner.invoke(app, ["sweep", "plan", str(copy / "sweep.toml"), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert (copy / "README.md").is_file()


def test_every_example_has_a_spec_and_a_readme():
    folders = [p for p in (ROOT / "examples").iterdir() if p.is_dir()]
    assert len(folders) == 5
    for folder in folders:
        assert (folder / "sweep.toml").is_file() and (folder / "README.md").is_file(), folder
