"""`medtl models list|inspect`: wiring and output (the behaviour is tested in tests/models)."""

from __future__ import annotations

from typer.testing import CliRunner

from medtl_cli.main import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def flat(text: str) -> str:
    return " ".join(text.split())


def test_list_with_a_pattern_shows_source_and_features():
    result = runner.invoke(app, ["models", "list", "resnet18*"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "│ resnet18 │ torchvision │ 512 │" in out
    assert "│ timm/resnet18 │ timm │ 512 │" in out
    assert "│ resnet18d │ timm │ 512 │" in out
    assert "3 backbone(s)" in out


def test_list_pretrained_tags():
    result = runner.invoke(app, ["models", "list", "vit_base_patch16_224.augreg*", "--pretrained"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "│ vit_base_patch16_224.augreg_in21k │ timm │ 768 │" in flat(result.stdout)


def test_long_lists_skip_feature_sizes():
    result = runner.invoke(app, ["models", "list", "resnet*"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "│ resnet50 │ torchvision │ - │" in flat(result.stdout)
    assert "narrow the pattern" in result.stdout


def test_inspect_shows_groups_blocks_and_default_cfg():
    result = runner.invoke(app, ["models", "inspect", "resnet50"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "resnet50 (torchvision): 23,508,032 parameters" in out
    assert "pooled features 2048, tokens of 2048, 16 blocks" in out
    assert "│ stem │ 9,536 │ │ │" in out
    assert "│ stage1 │ 215,808 │ 256 │ 4 │" in out
    assert "│ stage4 │ 14,964,736 │ 2048 │ 32 │" in out
    assert "│ head │ 2,049 per output │ 2048 -> K │ │" in out
    assert "│ mean │ (0.485, 0.456, 0.406) │" in out
    assert "hub/checkpoints/resnet50-0676ba61.pth" in out


def test_inspect_a_timm_vit():
    result = runner.invoke(app, ["models", "inspect", "vit_base_patch16_clip_224"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "vit_base_patch16_clip_224 (timm)" in out and "12 blocks" in out
    assert "│ stage4 │" in out and "│ 768 │ 16 │" in out


def test_unknown_backbone_is_one_line_with_close_matches_and_exit_2():
    result = runner.invoke(app, ["models", "inspect", "resnet5O"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown backbone 'resnet5O', did you mean 'resnet50'")


def test_pattern_without_matches_exit_2():
    result = runner.invoke(app, ["models", "list", "resnet_nope*"])
    assert result.exit_code == 2
    assert "unknown backbone pattern 'resnet_nope*'" in result.stderr


def test_a_pattern_that_misses_suggests_the_wider_one():
    result = runner.invoke(app, ["models", "list", "dinov2*"])
    assert result.exit_code == 2
    assert "no backbone matches 'dinov2*'; '*dinov2*' matches some" in result.stderr


def test_inspect_segmentation_shows_the_unet_groups():
    result = runner.invoke(app, ["models", "inspect", "resnet18", "--task", "segmentation"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "U-Net over resnet18: 14,328,209 parameters, pyramid decoder of 5 levels" in out
    assert "(widths 256, 128, 64, 32, 16)" in out
    assert "│ stage4 │ 8,393,728 │ encoder │" in out
    assert "│ decoder │ 3,151,552 │ new; skips at 1/2, 1/4, 1/8, 1/16 │" in out
    assert "│ head │ 145 │ new; 3x3 conv 16 -> 1 │" in out
    assert "trains: decoder, head" in out


def test_inspect_segmentation_refuses_an_encoder_without_usable_maps():
    result = runner.invoke(app, ["models", "inspect", "vit_small_patch14_dinov2", "--task", "segmentation"])
    assert result.exit_code == 2
    assert "cannot be a U-Net encoder" in result.output and "encoders that work" in result.output
