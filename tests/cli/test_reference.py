"""The docs cannot drift from the CLI: every command's --help is in the generated reference, and
every top-level command has a page in the user guide's nav (mkdocs.yml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from medtl_cli.reference import command_paths, help_text, reference_pages

ROOT = Path(__file__).resolve().parents[2]


def _nav_labels(nav) -> list[str]:
    labels = []
    for item in nav:
        if isinstance(item, dict):
            for label, value in item.items():
                labels.append(label)
                if isinstance(value, list):
                    labels += _nav_labels(value)
    return labels


def test_every_command_help_is_in_the_reference():
    pages = reference_pages()
    paths = list(command_paths())
    assert ("report",) in paths and ("prepare", "phantom", "brats") in paths
    for path in paths:
        page = pages[f"{path[0]}.md"]
        assert f"`medtl {' '.join(path)}`" in page
        assert help_text(path) in page
        assert f"Usage: medtl {' '.join(path)}" in page


def test_every_top_level_command_has_a_guide_page():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    labels = " ".join(_nav_labels(config["nav"])).lower()
    pages = {p.stem for p in (ROOT / "docs" / "commands").glob("*.md")}
    for path in command_paths():
        if len(path) == 1:
            assert path[0] in labels, f"no page for `medtl {path[0]}` in mkdocs.yml's nav"
    assert pages >= {"prepare", "data", "finetune", "evaluate", "report", "config"}
