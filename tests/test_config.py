from __future__ import annotations

from pathlib import Path

import pytest

from medtl.config import load_settings, settings_sources
from medtl.errors import ConfigError, InputError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith("MEDTL_") and key != "MEDTL_WEIGHTS_DIR":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file():
    s = load_settings()
    assert s.prepare.workers == 1
    assert s.prepare.dtype == "float16"
    assert s.train.batch_size == 32


@pytest.mark.parametrize(
    ("file", "env", "flag", "expected", "source"),
    [
        (None, None, None, 1, "default"),
        (4, None, None, 4, "file"),
        (4, 6, None, 6, "env MEDTL_PREPARE__WORKERS"),
        (4, 6, 8, 8, "flag"),
        (None, None, 8, 8, "flag"),
    ],
)
def test_precedence_flag_env_file_default(monkeypatch, tmp_path, file, env, flag, expected, source):
    if file is not None:
        _write(tmp_path / "medtl.toml", f"[prepare]\nworkers = {file}\n")
    if env is not None:
        monkeypatch.setenv("MEDTL_PREPARE__WORKERS", str(env))
    overrides = {"prepare": {"workers": flag}}
    assert load_settings(overrides=overrides).prepare.workers == expected
    rows = {name: (value, src) for name, value, src in settings_sources(overrides=overrides)}
    value, src = rows["prepare.workers"]
    assert value == expected
    assert src.startswith(source)


def test_explicit_config_file(tmp_path):
    cfg = _write(tmp_path / "other.toml", '[train]\ndevice = "cpu"\nbatch_size = 4\n')
    s = load_settings(cfg)
    assert (s.train.device, s.train.batch_size) == ("cpu", 4)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(InputError, match=r"nope\.toml: config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_malformed_toml_names_file(tmp_path):
    cfg = _write(tmp_path / "bad.toml", "[prepare\nworkers = 2\n")
    with pytest.raises(InputError, match=r"bad\.toml: not valid TOML"):
        load_settings(cfg)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[prepare]\ndtype = "float64"\n', "prepare.dtype"),
        ("[prepare]\nworkers = 0\n", "prepare.workers"),
        ("[nosuch]\nx = 1\n", "nosuch"),
    ],
)
def test_invalid_values_are_config_errors(tmp_path, text, match):
    cfg = _write(tmp_path / "medtl.toml", text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg)
