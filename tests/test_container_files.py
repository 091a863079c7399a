"""The Dockerfile, .dockerignore and apptainer.def copy the same allow-list: what the install needs,
never .git, runs/, demo/ or data."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def allowed_by_dockerignore() -> set[str]:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore must start by ignoring everything"
    return {line[1:] for line in lines if line.startswith("!")}


def copied_by_apptainer() -> set[str]:
    text = (ROOT / "apptainer.def").read_text()
    files = re.split(r"^%files\s*$", text, flags=re.M)[1].split("\n%", 1)[0]
    entries = [
        line.split()[0] for line in files.splitlines() if line.strip() and not line.strip().startswith("#")
    ]
    return set(entries)


def copied_by_dockerfile() -> set[str]:
    sources = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            sources.update(parts[:-1])
    return sources


def test_the_three_lists_agree_and_exist():
    allowed = allowed_by_dockerignore()
    assert allowed == copied_by_apptainer() == copied_by_dockerfile()
    assert {"pyproject.toml", "scripts/install.sh", "medtl", "cli"} <= allowed
    for path in allowed:
        assert (ROOT / path).exists(), path
    assert not allowed & {".", ".git", "runs", "demo", "tests", "data"}


def test_dockerfile_base_is_a_build_argument_and_the_image_checks_its_health():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=nvidia/cuda:\S+-runtime-", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r"^USER 10001$", text, re.M)
    assert "HEALTHCHECK" in text and '"medtl", "doctor", "--quiet"' in text
    assert 'ENTRYPOINT ["medtl"]' in text and "scripts/install.sh" in text
