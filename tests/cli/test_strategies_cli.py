"""`medtl strategies list|show`: wiring and output (the behaviour is tested in tests/strategies)."""

from __future__ import annotations

from typer.testing import CliRunner

from medtl.strategies import list_strategies
from medtl_cli.main import app

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


def test_list_shows_every_builtin_with_phases_and_description():
    result = runner.invoke(app, ["strategies", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    for name in list_strategies():
        assert f"│ {name} │" in out
    assert "head (1000) → last_blocks (100) → all_non_bn (50)" in out


def test_show_counts_parameters_per_phase_on_resnet50():
    result = runner.invoke(
        app, ["strategies", "show", "DA_L1SB", "--arch", "resnet50", "--classes", "1"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "resnet50, 1 output(s): 23,510,081 parameters in total" in out
    assert "│ head │ head │ 1000 │ adam │ 0.0001 │ 0 │ frozen │ 2,049 │ head │" in out
    assert "4,458,497" in out and "stage4 (part), head" in out


def test_show_without_arch_prints_the_definition_and_toml_round_trips(tmp_path):
    result = runner.invoke(app, ["strategies", "show", "staged"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "module = cdtm" in result.stdout
    assert "│ all │ all │ 100 │ adamw │ 1e-05 │ 0.01 │ train │" in flat(result.stdout)

    toml = runner.invoke(app, ["strategies", "show", "staged", "--toml"])
    assert toml.exit_code == 0, toml.output
    path = tmp_path / "mine.toml"
    path.write_text(toml.stdout.replace('name = "staged"', 'name = "mine"'))
    again = runner.invoke(app, ["strategies", "show", str(path)], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "mine: staged fine-tuning" in flat(again.stdout)


def test_unknown_strategy_is_one_line_with_close_matches_and_exit_2():
    result = runner.invoke(app, ["strategies", "show", "DA_L1SBB"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown strategy 'DA_L1SBB', did you mean 'DA_L1SB'")


def test_bad_strategy_file_names_the_file_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[phases]]\nname = "head"\ntrainable = ["head"]\nepoch = 3\nlr = 1e-3\n')
    result = runner.invoke(app, ["strategies", "show", str(path)])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith(
        f"error: {path}: unknown key 'epoch' in phase 1 ('head'), did you mean 'epochs'?"
    )


def test_selector_that_does_not_fit_the_architecture_exit_2(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text('[[phases]]\nname = "deep"\ntrainable = ["stage9"]\nepochs = 1\nlr = 1e-3\n')
    result = runner.invoke(app, ["strategies", "show", str(path), "--arch", "resnet18"])
    assert result.exit_code == 2
    assert "phase 'deep': unknown selector 'stage9'" in " ".join(result.stderr.split())
