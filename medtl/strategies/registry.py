"""Built-in strategies (``builtin.toml``) by name, and the one lookup that also accepts a user's file."""

from __future__ import annotations

import functools
import sys
from importlib import resources
from pathlib import Path

from medtl.errors import UnknownChoiceError
from medtl.strategies.strategy import Strategy, load_strategy_file, parse_strategy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_BUILTIN_FILE = "builtin.toml"


@functools.cache
def _builtin() -> dict[str, Strategy]:
    text = resources.files("medtl.strategies").joinpath(_BUILTIN_FILE).read_text(encoding="utf-8")
    tables = tomllib.loads(text)
    return {name: parse_strategy(table, source=_BUILTIN_FILE, name=name) for name, table in tables.items()}


def list_strategies() -> list[str]:
    """Names of the built-in strategies, in the order they are defined."""
    return list(_builtin())


def get_strategy(name_or_path: str | Path) -> Strategy:
    """A built-in strategy by name (case-insensitive), or a user's strategy from a ``.toml`` file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text:
        return load_strategy_file(Path(text))
    builtin = _builtin()
    if text in builtin:
        return builtin[text]
    by_lower = {name.lower(): strategy for name, strategy in builtin.items()}
    if text.lower() in by_lower:
        return by_lower[text.lower()]
    error = UnknownChoiceError("strategy", text, builtin)
    error.hint = "or give the path of a .toml strategy file; `medtl strategies list` shows the built-ins"
    raise error
