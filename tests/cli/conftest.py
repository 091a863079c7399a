"""Fixtures the CLI tests share with the library tests they drive."""

from tests.sweep.conftest import spec_dir, sweep_store  # noqa: F401 (fixtures)
