"""The CLI's shared machinery: the one error boundary, settings from flags, progress rendering."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from medtl.errors import MedtlError
from medtl.progress import Progress

console = Console()
err_console = Console(stderr=True)
# Logs and pipes (SLURM) get tables wide enough not to truncate; a terminal keeps its own width.
for _c in (console, err_console):
    if not _c.is_terminal and "COLUMNS" not in os.environ:
        _c.width = 160

# Set by the root callback (--config FILE); commands read it through load_cli_settings().
state: dict[str, Any] = {"config_file": None}


class MedtlGroup(TyperGroup):
    """Root command group: every MedtlError raised below becomes one red line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MedtlError as exc:
            if os.environ.get("MEDTL_DEBUG") == "1":
                raise
            hint = f" ({exc.hint})" if exc.hint else ""
            err_console.print(f"[bold red]error:[/] {exc.message}{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if os.environ.get("MEDTL_DEBUG") == "1":
                raise
            err_console.print(
                "[bold red]interrupted[/] (run the same command again to continue)", highlight=False
            )
            raise typer.Exit(130) from None
        except PermissionError as exc:
            # Typically a container writing into a bind-mounted folder as another user.
            if os.environ.get("MEDTL_DEBUG") == "1":
                raise
            err_console.print(
                f"[bold red]error:[/] {permission_message(exc)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None


def permission_message(exc: PermissionError) -> str:
    """A permission error no command turned into its own line (one that was not writing an output)."""
    from medtl.io.paths import container_hint

    hint = container_hint()
    return f"{exc.filename or 'a file'}: permission denied{f' ({hint})' if hint else ''}"


def new_app(help_text: str, **kwargs: Any) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, **kwargs)


def load_cli_settings(**sections: dict[str, Any]):
    """Settings with these flag values on top (flags left at None fall through to env/file/defaults)."""
    from medtl.config import load_settings

    return load_settings(state["config_file"], sections)


class RichProgress(Progress):
    """Progress bars with ETA for a terminal."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self._bar.start()

    def start(self, description: str, total: int | None = None) -> int:
        return self._bar.add_task(description, total=total, info="")

    def advance(self, task: int, n: int = 1, **info: Any) -> None:
        self._bar.update(task, advance=n, info=_format_info(info))

    def end(self, task: int, *, interrupted: bool = False) -> None:
        self._bar.stop_task(task)
        if interrupted:
            self._bar.update(task, info="interrupted")

    def message(self, text: str) -> None:
        self._bar.console.print(text, highlight=False)

    def close(self) -> None:
        self._bar.stop()


class PlainProgress(Progress):
    """Periodic plain lines for logs (SLURM, pipes): at most one per ``every`` seconds per task."""

    def __init__(self, every: float = 10.0, stream=None) -> None:
        self.every = every
        self.stream = stream or sys.stdout
        self._tasks: dict[int, dict[str, Any]] = {}

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, description: str, total: int | None = None) -> int:
        task = len(self._tasks) + 1
        now = time.monotonic()
        self._tasks[task] = {"desc": description, "total": total, "done": 0, "t0": now, "last": now}
        self._print(f"{description}: started" + (f" ({total} steps)" if total else ""))
        return task

    def advance(self, task: int, n: int = 1, **info: Any) -> None:
        t = self._tasks[task]
        t["done"] += n
        now = time.monotonic()
        if now - t["last"] >= self.every or (t["total"] and t["done"] >= t["total"]):
            t["last"] = now
            elapsed = now - t["t0"]
            line = f"{t['desc']}: {t['done']}" + (f"/{t['total']}" if t["total"] else "")
            if t["total"] and t["done"]:
                eta = elapsed / t["done"] * (t["total"] - t["done"])
                line += f" elapsed {elapsed:.0f}s eta {eta:.0f}s"
            if info:
                line += " " + _format_info(info)
            self._print(line)

    def end(self, task: int, *, interrupted: bool = False) -> None:
        t = self._tasks.get(task)
        if t is not None:
            how = "interrupted after" if interrupted else "done in"
            self._print(f"{t['desc']}: {how} {time.monotonic() - t['t0']:.1f}s")

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        pass


def _format_info(info: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())


class make_progress:
    """``with make_progress() as progress:`` rich bars on a terminal, plain lines otherwise."""

    def __enter__(self) -> RichProgress | PlainProgress:
        self._p = RichProgress() if console.is_terminal else PlainProgress()
        return self._p

    def __exit__(self, *exc: object) -> None:
        self._p.close()


def setup_logging() -> None:
    level = logging.DEBUG if os.environ.get("MEDTL_DEBUG") == "1" else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
