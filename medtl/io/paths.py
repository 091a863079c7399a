"""Where medtl may write: the one guard every command that writes an output goes through.

Medical datasets take weeks to obtain, so no command may delete or overwrite what it did not
create:

* ``check_not_input``: an output that is, contains or lies inside an input is refused (symbolic
  links resolved), because replacing the output would delete the input;
* ``check_replaceable``: ``--overwrite`` replaces only an empty directory or one that medtl wrote
  (a store with its manifest, a features directory, ...); anything else is refused;
* ``enclosing_store``: split files and other side files are never written inside a store;
* ``single_component``: names that become file names (run names, evaluation names) cannot escape
  their directory;
* ``write_errors``: a read-only directory or a full disk is one line naming the path (OutputError),
  not a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medtl.errors import OutputError, OutputExistsError

RESUME_HINT = "free some space, then run the same command again: it continues where it stopped"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def resolved(path: str | Path) -> Path:
    """Absolute path with ``~`` expanded and every existing symbolic link resolved."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_not_input(
    out: str | Path, inputs: Iterable[str | Path | None], *, allow_inside: bool = False
) -> None:
    """Refuse an output that is an input, contains one, or (unless ``allow_inside``) lies inside one."""
    target = resolved(out)
    for item in inputs:
        if item is None:
            continue
        source = resolved(item)
        if target == source:
            raise OutputError(out, f"is also an input ({item}); choose another output")
        if source.is_relative_to(target):
            raise OutputError(out, f"contains the input {item}; writing it would delete that input")
        if not allow_inside and target.is_relative_to(source):
            raise OutputError(out, f"lies inside the input {item}; write the output somewhere else")


def read_json_format(path: Path) -> str | None:
    """The ``format`` field of a JSON file, None when it is not a readable JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


@dataclass(frozen=True)
class OutputKind:
    """What medtl writes into a directory, and how to recognise one it wrote."""

    name: str  # "medtl store", used in messages
    marker: str  # file inside the directory
    is_ours: Callable[[Path], bool]  # given the marker path

    def recognises(self, directory: Path) -> bool:
        marker = directory / self.marker
        return marker.is_file() and self.is_ours(marker)


def _has_format(fmt: str) -> Callable[[Path], bool]:
    return lambda marker: read_json_format(marker) == fmt


STORE = OutputKind("medtl store", "manifest.json", _has_format("medtl-store"))
FEATURES = OutputKind("medtl features directory", "features.json", _has_format("medtl-features"))
PROBE = OutputKind("medtl probe directory", "probe.json", _has_format("medtl-probe"))
PHANTOM = OutputKind("medtl phantom dataset", ".medtl-phantom.json", _has_format("medtl-phantom"))


def check_replaceable(out: str | Path, kind: OutputKind, *, overwrite: bool) -> None:
    """Allow a new output, or with ``overwrite`` an empty directory or one of ``kind``; else refuse."""
    path = Path(out)
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise OutputExistsError(path)
    if not path.is_dir():
        raise OutputError(
            path,
            f"is a file, not a {kind.name}; --overwrite replaces only a {kind.name} or an empty directory",
        )
    if kind.recognises(path):
        return
    try:
        empty = next(path.iterdir(), None) is None
    except OSError as exc:
        raise OutputError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not empty:
        raise OutputError(
            path,
            f"is not a {kind.name} (no {kind.marker} written by medtl); --overwrite replaces only a "
            f"{kind.name} or an empty directory",
            hint="choose a new output path, or remove the directory yourself",
        )


def guard_output(
    out: str | Path,
    kind: OutputKind,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    allow_inside: bool = False,
) -> Path:
    """``check_not_input`` and ``check_replaceable`` in one call, before anything is read or written."""
    check_not_input(out, inputs, allow_inside=allow_inside)
    check_replaceable(out, kind, overwrite=overwrite)
    return Path(out)


def enclosing_store(path: str | Path) -> Path | None:
    """The medtl store that ``path`` is or lies inside, or None."""
    for folder in (resolved(path), *resolved(path).parents):
        if STORE.recognises(folder):
            return folder
    return None


def single_component(name: str, what: str) -> str:
    """``name`` if it is one plain path component (no separator, not '.' or '..'), else ValueError."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"{what} must be a single folder name (no '/', not '.' or '..'), got {name!r}")
    if os.altsep and os.altsep in name:
        raise ValueError(f"{what} must be a single folder name, got {name!r}")
    return name


def replace_dir(new: Path, out: Path) -> None:
    """Move the finished directory ``new`` to ``out``. An existing ``out`` is moved aside first and
    removed only once ``new`` is in place, so a failure at any point leaves the old or the new one.
    A symbolic link at ``out`` is replaced, its target left alone."""
    if not (out.exists() or out.is_symlink()):
        os.replace(new, out)
        return
    trash = out.parent / f".{out.name}.old"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(out, trash)
    os.replace(new, out)
    if trash.is_symlink() or not trash.is_dir():
        trash.unlink()
    else:
        shutil.rmtree(trash, ignore_errors=True)


def write_error(exc: BaseException, path: str | Path) -> OutputError | None:
    """The one-line error for a failed write (full disk, read-only), or None when it is something else.

    Also recognises the messages of writers that wrap the OS error (safetensors' SafetensorError).
    """
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in _NO_SPACE or "No space left" in text or "StorageFull" in text or "Disk quota" in text:
        return OutputError(path, "no space left on the device", hint=RESUME_HINT)
    if code in _READ_ONLY or "Read-only file system" in text or "Permission denied" in text:
        reason = os.strerror(code) if code in _READ_ONLY else "read-only or permission denied"
        return OutputError(path, f"cannot be written ({reason.lower()})", hint=writable_hint())
    if isinstance(exc, OSError):
        return OutputError(path, f"cannot be written ({exc.strerror or exc})")
    return None


def container_hint() -> str | None:
    """Inside medtl's image, what usually makes a folder unwritable: a bind-mounted folder of another
    user (the image's user is not the host's); None outside it."""
    if os.environ.get("MEDTL_IN_CONTAINER") == "1":
        return f"uid {os.getuid()} in the container; use docker run --user $(id -u):$(id -g) ..."
    return None


def writable_hint() -> str:
    """What to do about an output that cannot be written."""
    return container_hint() or "choose a writable output"


@contextmanager
def write_errors(path: str | Path) -> Iterator[None]:
    """Turn OSError raised while writing ``path`` into a one-line OutputError."""
    try:
        yield
    except OSError as exc:
        error = write_error(exc, path)
        if error is None:
            raise
        raise error from exc
