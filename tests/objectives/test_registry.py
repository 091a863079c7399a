"""Every registered objective: its class, its config section (kind, monitors, store kinds), and the
one-line errors of a bad section. Parametrized over the registry, so a new objective is tested here."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medtl.errors import UnknownChoiceError
from medtl.objectives import (
    DEFAULT_KIND,
    OBJECTIVES,
    config_class,
    get_objective,
    kind_for_store,
    objective_class,
    objective_kinds,
)
from medtl.objectives.base import Objective

KINDS = sorted(OBJECTIVES)


def test_every_config_has_a_registered_objective():
    assert sorted(objective_kinds()) == KINDS and DEFAULT_KIND in KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_objective_class_and_config_agree(kind):
    cls = objective_class(kind)
    assert issubclass(cls, Objective) and cls.kind == kind
    assert cls.config_class is config_class(kind)
    config = config_class(kind)()
    assert config.kind == kind and isinstance(get_objective(config), cls)


@pytest.mark.parametrize("kind", KINDS)
def test_monitors_have_modes_and_the_default_is_one_of_them(kind):
    cls = config_class(kind)
    assert cls.monitors["loss"] == "min"
    assert set(cls.monitors.values()) <= {"min", "max"}
    config = cls()
    assert config.monitor in cls.monitors and config.monitor_mode == cls.monitors[config.monitor]


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_monitor_suggests_close_names(kind):
    cls = config_class(kind)
    default = cls().monitor
    with pytest.raises(UnknownChoiceError, match=f"unknown monitor metric '{default}x', did you mean"):
        cls(monitor=default + "x")


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_key_is_refused(kind):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        config_class(kind).model_validate({"kind": kind, "epochz": 3})


def test_store_kind_picks_the_objective():
    assert kind_for_store("classification") == "classification"
    assert kind_for_store("multilabel") == "classification"
    assert kind_for_store("segmentation") == "segmentation"
    # a store kind no objective takes gets the default objective, whose check refuses it
    assert kind_for_store("volumes") == DEFAULT_KIND


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(UnknownChoiceError, match="unknown objective 'segmentaton'"):
        objective_class("segmentaton")
