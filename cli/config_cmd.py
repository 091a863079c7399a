"""`medtl config`: show the resolved settings and where each value came from."""

from __future__ import annotations

from rich.table import Table

from medtl_cli.app import console, new_app, state

app = new_app("Inspect settings (flags > MEDTL_* environment > medtl.toml > defaults).")


@app.command("show")
def show() -> None:
    """Print every setting, its value and its source."""
    from medtl.config import settings_sources

    table = Table("setting", "value", "source")
    for name, value, source in settings_sources(state["config_file"]):
        table.add_row(name, str(value), source)
    console.print(table)
