"""The CLI reference of the documentation, generated from the Typer app itself.

``reference_pages()`` returns one Markdown page per top-level command (a group's page holds every
subcommand), each with the exact ``--help`` text, so the docs cannot drift from the CLI. The MkDocs
hook ``docs/hooks/cli_reference.py`` adds them to the site at build time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click
import typer.main
from typer.testing import CliRunner

HELP_WIDTH = 100


# Top-level commands in the workflow's order; others follow alphabetically.
WORKFLOW = ("quickstart", "prepare", "data", "models", "strategies", "finetune", "extract", "probe",
            "pretrain", "evaluate", "sweep", "report", "config")  # fmt: skip


def _click_root() -> Any:
    from medtl_cli.main import app

    return typer.main.get_command(app)


def command_paths(group: Any = None, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group path below the root, depth first (groups have ``list_commands``)."""
    group = group or _click_root()
    if not hasattr(group, "list_commands"):
        return
    ctx = click.Context(group)
    names = group.list_commands(ctx)
    if not prefix:
        names = sorted(names, key=lambda n: (WORKFLOW.index(n) if n in WORKFLOW else len(WORKFLOW), n))
    for name in names:
        sub = group.get_command(ctx, name)
        if sub is None or getattr(sub, "hidden", False):
            continue
        yield (*prefix, name)
        yield from command_paths(sub, (*prefix, name))


def help_text(path: tuple[str, ...]) -> str:
    """``medtl PATH --help`` as a user sees it in a 100-column terminal."""
    from medtl_cli.main import app

    env = {"COLUMNS": str(HELP_WIDTH), "TERMINAL_WIDTH": str(HELP_WIDTH), "NO_COLOR": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = CliRunner().invoke(app, [*path, "--help"], prog_name="medtl", terminal_width=HELP_WIDTH)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if result.exit_code != 0:
        raise RuntimeError(f"medtl {' '.join(path)} --help exited with {result.exit_code}: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")


def reference_pages() -> dict[str, str]:
    """``{"<command>.md": markdown}``: one page per top-level command, plus ``index.md``."""
    paths = list(command_paths())
    top = [p[0] for p in paths if len(p) == 1]
    pages = {}
    for name in top:
        lines = [f"# medtl {name}", "", "Generated from the CLI itself (`--help` of every command).", ""]
        for path in [p for p in paths if p[0] == name]:
            lines += [
                f"{'#' * min(len(path) + 1, 4)} `medtl {' '.join(path)}`",
                "",
                "```text",
                help_text(path),
                "```",
                "",
            ]
        pages[f"{name}.md"] = "\n".join(lines)
    index = ["# CLI reference", "", "```text", help_text(()), "```", ""]
    index += [f"* [`medtl {name}`]({name}.md)" for name in top]
    pages["index.md"] = "\n".join(index) + "\n"
    return pages
