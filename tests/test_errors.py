from __future__ import annotations

from medtl.errors import InputError, UnknownChoiceError, did_you_mean


def test_did_you_mean_suggests_close_matches():
    assert "'resnet50'" in did_you_mean("resnet5", ["resnet18", "resnet50", "densenet121"])


def test_did_you_mean_lists_short_choice_sets_when_nothing_is_close():
    assert did_you_mean("zzz", ["a", "b"]) == "; valid choices: a, b"


def test_unknown_choice_message():
    err = UnknownChoiceError("strategy", "lineer", ["linear", "full"])
    assert str(err) == "unknown strategy 'lineer', did you mean 'linear'?"
    assert err.exit_code == 2


def test_input_error_names_path_and_problem(tmp_path):
    err = InputError(tmp_path / "x.nii.gz", "truncated gzip stream")
    assert str(err) == f"{tmp_path / 'x.nii.gz'}: truncated gzip stream"
