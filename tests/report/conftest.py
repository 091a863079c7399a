from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.synthetic import write_run, write_sweep


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """4 strategies x 2 seeds with predictions, robustness and an external test; one failed and
    one running run."""
    root = write_sweep(tmp_path / "sweep", robustness=True, external=True)
    write_run(root, strategy="full", seed=2, status="failed")
    write_run(root, strategy="linear", seed=2, status="running")
    return root
