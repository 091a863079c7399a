"""MkDocs hook: the CLI reference pages, generated from the Typer app at build time.

Every command's ``--help`` lands in ``reference/cli/<command>.md`` and in the nav, so a new
command is documented by the next build and an old text cannot linger.
"""

from __future__ import annotations

from mkdocs.structure.files import File

from medtl_cli.reference import reference_pages

_PAGES: dict[str, str] = {}


def on_config(config, **kwargs):
    _PAGES.clear()
    _PAGES.update(reference_pages())
    entries = [{"Overview": "reference/cli/index.md"}]
    entries += [{f"medtl {name[:-3]}": f"reference/cli/{name}"} for name in _PAGES if name != "index.md"]
    for item in config["nav"]:
        if isinstance(item, dict) and "CLI reference" in item:
            item["CLI reference"] = entries
            break
    else:
        config["nav"].append({"CLI reference": entries})
    return config


def on_files(files, config, **kwargs):
    for name, content in _PAGES.items():
        files.append(File.generated(config, f"reference/cli/{name}", content=content))
    return files
