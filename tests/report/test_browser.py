"""The report page in a real browser: headless Chromium loads it, every figure decodes, no console
errors; a screenshot is saved ($MEDTL_SCREENSHOT_DIR or the test's tmp folder). In CI (CI=true) a
missing Chromium fails the test instead of skipping it."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from medtl.report import build_report
from tests.report.browser import find_chromium, render, screenshot_dir

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI (apt-get install chromium, see Makefile: browser-deps)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return path


def test_report_page_renders_every_figure_without_errors(chromium, sweep, tmp_path):
    result = build_report(sweep, baseline=("strategy", "full"), bootstrap=200)
    shot = screenshot_dir(tmp_path) / "report.png"
    rendered = render(result.html, shot)
    assert rendered.title == f"medtl report: {sweep.name}"
    assert len(rendered.images) == len(result.figures) == 6
    for image in rendered.images:
        assert image["complete"] and image["width"] > 400 and image["height"] > 150, image
    assert rendered.console_errors == [] and rendered.exceptions == [] and rendered.failed_loads == []
    with Image.open(shot) as image:
        width, height = image.size
        colours = image.convert("RGB").resize((64, 256)).getcolors(64 * 256)
    assert width == 1280 and height > 2000  # the whole page, tables and six figures
    assert len(colours) > 50  # something was drawn, not a blank page


def test_the_check_sees_a_broken_figure_and_a_console_error(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>broken</title></head><body>"
        '<img alt="missing" src="missing.png"><script>console.error("boom")</script></body></html>'
    )
    rendered = render(page)
    assert rendered.images == [{"alt": "missing", "complete": True, "width": 0, "height": 0}]
    assert any("boom" in e for e in rendered.console_errors)
