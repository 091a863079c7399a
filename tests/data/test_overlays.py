"""Segmentation overlays: panels, colours where the masks are, PNG files written whole."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medtl.data.overlays import GAP, MIN_SIDE, PALETTE, TITLE_HEIGHT, overlay_panels, save_overlay


def _case():
    image = np.linspace(0, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)  # 4 MRI modalities
    truth = np.zeros((3, 16, 16), np.uint8)
    truth[2, 2:12, 2:12] = 1  # WT
    truth[0, 4:6, 4:6] = 1  # ET, inside WT
    prediction = np.zeros_like(truth)
    prediction[2, 8:14, 8:14] = 1
    return image, truth, prediction


def test_panels_show_the_image_and_colour_truth_and_prediction():
    image, truth, prediction = _case()
    panels = overlay_panels(image, truth, prediction)
    assert panels.shape == (16, 3 * 16 + 2 * GAP, 3) and panels.dtype == np.uint8
    base, truth_panel = panels[:, :16], panels[:, 16 + GAP : 32 + GAP]
    pred_panel = panels[:, 32 + 2 * GAP :]
    assert (base[..., 0] == base[..., 1]).all()  # grey: the first channel only
    assert (truth_panel[12:, 12:] == base[12:, 12:]).all()  # no mask: untouched
    # ET is painted over WT, so the first channel's colour shows where both are
    red_vs_blue = truth_panel[5, 5].astype(int) - truth_panel[8, 8].astype(int)
    assert red_vs_blue[0] > 0 and PALETTE[0][0] > PALETTE[2][0]
    assert (pred_panel[2:4, 2:4] == base[2:4, 2:4]).all() and (pred_panel[10, 10] != base[10, 10]).any()


def test_save_overlay_writes_a_png(tmp_path):
    image, truth, prediction = _case()
    path = save_overlay(tmp_path / "overlays" / "val_0003.png", image, truth, prediction)
    with Image.open(path) as png:
        # 16 px images are enlarged 8x to MIN_SIDE
        assert png.format == "PNG" and png.size == (3 * MIN_SIDE + 2 * GAP, MIN_SIDE + TITLE_HEIGHT)
    assert sorted(p.name for p in path.parent.iterdir()) == ["val_0003.png"]  # no temporary left


def test_mismatched_shapes_are_refused():
    image, truth, prediction = _case()
    with pytest.raises(ValueError, match="differ"):
        overlay_panels(image, truth, prediction[:, :8])
