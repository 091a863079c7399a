"""The CLI's one error boundary and the config command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from medtl.errors import InputError
from medtl_cli.main import app

runner = CliRunner()


@pytest.fixture
def failing_command():
    sub = typer.Typer()

    @sub.command("boom")
    def boom() -> None:
        raise InputError("/data/x.nii.gz", "truncated gzip stream")

    app.add_typer(sub, name="testfail")
    yield
    app.registered_groups.pop()


def test_medtl_error_is_one_line_and_exit_2(failing_command, monkeypatch):
    monkeypatch.delenv("MEDTL_DEBUG", raising=False)
    result = runner.invoke(app, ["testfail", "boom"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: /data/x.nii.gz: truncated gzip stream"]


def test_debug_shows_the_traceback(failing_command, monkeypatch):
    monkeypatch.setenv("MEDTL_DEBUG", "1")
    result = runner.invoke(app, ["testfail", "boom"])
    assert isinstance(result.exception, InputError)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("medtl ")


def test_config_show_reports_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "medtl.toml").write_text("[prepare]\nworkers = 3\n")
    monkeypatch.setenv("MEDTL_TRAIN__BATCH_SIZE", "7")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "prepare.workers │ 3 │ file" in out
    assert "train.batch_size │ 7 │ env MEDTL_TRAIN__BATCH_SIZE" in out
    assert "prepare.dtype │ float16 │ default" in out


def test_bad_config_file_is_exit_2(tmp_path):
    result = runner.invoke(app, ["--config", str(tmp_path / "missing.toml"), "config", "show"])
    assert result.exit_code == 2
    assert "missing.toml: config file not found" in result.stderr


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from medtl_cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_permission_error_is_one_line_naming_the_file(monkeypatch):
    sub = typer.Typer()

    @sub.command("write")
    def write() -> None:
        raise PermissionError(13, "Permission denied", "/work/runs/x")

    app.add_typer(sub, name="testperm")
    try:
        monkeypatch.delenv("MEDTL_DEBUG", raising=False)
        monkeypatch.setenv("MEDTL_IN_CONTAINER", "1")
        result = runner.invoke(app, ["testperm", "write"])
    finally:
        app.registered_groups.pop()
    assert result.exit_code == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: /work/runs/x: permission denied (uid ")
    assert "docker run --user $(id -u):$(id -g)" in line
