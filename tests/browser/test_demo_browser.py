"""`make demo`'s pages in a real browser: Voila serves demo/ and headless chromium opens each page, offline.

Each page must show its widget with no code, redraw its picture when a slider moves, keep every part inside the
screen at 1024x768 and 1920x1080 in normal and classroom mode, and ask nothing of the network beyond 127.0.0.1.
Skips without Voila (the [demo] extra) unless COURSE_REQUIRE_DEMO=1. Screenshots land in the test's temporary folder.
"""
from __future__ import annotations

import statistics
import time

from browser_layout import check_layouts  # tests/browser/ is on sys.path (pytest prepends it)

PAGE_TIMEOUT_MS = 120_000  # the page runs its notebook (model load included) before it shows anything
REDRAW_TIMEOUT_MS = 20_000
FONT_CDN = "cdn.jsdelivr.net/npm/@fortawesome"  # Voila's template links icon fonts; offline they fail, harmlessly


def _open_offline(chromium, url: str, selector: str):
    """A page at 1920x1080 whose requests beyond 127.0.0.1 are refused; returns (page, refused URLs)."""
    page = chromium.new_page(viewport={"width": 1920, "height": 1080})
    refused: list[str] = []

    def route(request_route) -> None:
        address = request_route.request.url
        if address.startswith(("http://127.0.0.1", "data:", "blob:")):
            request_route.continue_()
        else:
            refused.append(address)
            request_route.abort()

    page.route("**/*", route)
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    page.locator(selector).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    return page, refused


def _image_source(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("src") or ""


def _timed_redraws(page, slider: str, picture: str, presses: int) -> list[float]:
    """Press the right arrow on a slider's handle ``presses`` times; seconds from each press to the new picture."""
    handle = page.locator(f"{slider} .noUi-handle").first
    seconds = []
    for _ in range(presses):
        old = _image_source(page, picture)
        start = time.monotonic()
        handle.press("ArrowRight")
        page.wait_for_function("([sel, old]) => document.querySelector(sel).getAttribute('src') !== old",
                               arg=[picture, old], timeout=REDRAW_TIMEOUT_MS)
        seconds.append(time.monotonic() - start)
    return seconds


def _assert_offline_and_clean(page, refused: list[str]) -> None:
    assert all(FONT_CDN in address for address in refused), f"the page reached beyond 127.0.0.1: {refused}"
    assert "import os" not in page.locator("body").inner_text(), "the demo page shows its code"  # first code line
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0


def test_rope_page(chromium, voila_url, tmp_path):
    root, picture = ".rope-explorer", ".rope-explorer .rope-picture"
    page, refused = _open_offline(chromium, voila_url.format(name="rope.ipynb"), root)
    try:
        caption = page.locator(".rope-caption").first.inner_text()
        seconds = _timed_redraws(page, ".rope-query", picture, presses=5)
        assert page.locator(".rope-caption").first.inner_text() != caption
        problems = check_layouts(page, root, tmp_path, "rope")
        print("RoPE page: slider -> new picture median", round(1000 * statistics.median(seconds)), "ms;",
              "screenshots in", tmp_path)
        assert not any(problems.values()), problems
        _assert_offline_and_clean(page, refused)
    finally:
        page.close()


def test_sampling_explorer_page(chromium, voila_url, tmp_path):
    root, picture = ".sampling-explorer", ".sampling-explorer .explorer-plot"
    page, refused = _open_offline(chromium, voila_url.format(name="sampling_explorer.ipynb"), root)
    try:
        assert "course-classroom" in page.locator(root).first.get_attribute("class")  # `make demo` starts large
        seconds = _timed_redraws(page, ".explorer-temperature", picture, presses=3)
        text = page.locator(f"{root} .explorer-text").first
        generate = page.locator(f"{root} button.explorer-generate").first
        before, start = len(text.inner_text()), time.monotonic()
        generate.click()
        page.wait_for_function("(sel) => document.querySelector(sel).disabled", arg=f"{root} button.explorer-generate",
                               timeout=REDRAW_TIMEOUT_MS)
        assert "generating" in generate.inner_text()
        lengths = {before}
        while generate.is_disabled() and time.monotonic() - start < 120:
            lengths.add(len(text.inner_text()))  # tokens appear while the buttons are disabled
            time.sleep(0.2)
        generate_s = time.monotonic() - start
        assert not generate.is_disabled() and generate.inner_text().strip() == "generate 20"
        assert len(lengths) >= 3, f"the text grew in fewer than 2 visible steps: {sorted(lengths)}"
        problems = check_layouts(page, root, tmp_path, "explorer")
        print("explorer page: slider -> new chart median", round(1000 * statistics.median(seconds)), "ms;",
              f"generate 20: {generate_s:.1f} s; screenshots in", tmp_path)
        assert not any(problems.values()), problems
        _assert_offline_and_clean(page, refused)
    finally:
        page.close()
