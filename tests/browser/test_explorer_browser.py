"""The sampling explorer in a real browser: JupyterLab + headless chromium, driven with playwright.

Runs every cell of a temporary copy of lesson 03 (FAST mode), then drags the temperature and top-p sliders and
clicks "next token", checking that the candidate count, the bar chart and the text change; times slider -> new chart
(arrow-key steps) and "generate 20" (tokens must appear while its buttons are disabled); then checks the layout at
1024x768 and 1920x1080 in normal and classroom mode (tests/browser/browser_layout.py). Screenshots land in the test's
temporary folder, never in the repository (`tools/widget_pictures.py` makes the pictures in docs/).
"""
from __future__ import annotations

import re
import shutil
import statistics
import time

from browser_layout import check_layouts  # tests/browser/ is on sys.path (pytest prepends it)

from course_utils.paths import NOTEBOOKS_DIR

NOTEBOOK = NOTEBOOKS_DIR / "03_sampling_explorer.ipynb"
TEST_BUDGET_S = 240  # page load + run all cells (FAST: about a minute on a busy 2-core box) + interactions
INTERACTIONS_S = 100  # of which the interactions: drags, 5 timed steps, "generate 20", 4 layouts
WIDGET_TIMEOUT_MS = 30_000
CHANGE_TIMEOUT_S = 20.0
EXPLORER = ".sampling-explorer"


def _drag_slider(page, css_class: str, fraction: float) -> None:
    """Drag a slider's handle to ``fraction`` of its track (0 = left end, 1 = right end), like a mouse user."""
    track = page.locator(f"{EXPLORER} .{css_class} .noUi-target").first
    handle = page.locator(f"{EXPLORER} .{css_class} .noUi-handle").first
    handle.scroll_into_view_if_needed()
    box, grip = track.bounding_box(), handle.bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + fraction * box["width"], grip["y"] + grip["height"] / 2, steps=8)
    page.mouse.up()


def _wait_for_change(read, old, timeout_s: float = CHANGE_TIMEOUT_S):
    """Poll ``read()`` until it differs from ``old``; returns (new value, seconds waited)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        value = read()
        if value != old:
            return value, time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"no change within {timeout_s} s (still {str(old)[:200]!r})")


def _model_calls(timing) -> int:
    return int(re.search(r"model calls (\d+)", timing.inner_text()).group(1))


def _accept_dialogs(page) -> None:
    """Accept any modal JupyterLab dialog (e.g. "Select Kernel", whose default is the notebook's own kernel)."""
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    if accept.count() and accept.first.is_visible():
        accept.first.click()


def _run_all_cells(page, deadline: float) -> None:
    """Run every cell through the menu; return when every code cell shows an execution count."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # imported here: the fixture reports if missing

    page.locator(".jp-Notebook").first.wait_for(timeout=WIDGET_TIMEOUT_MS)
    try:
        page.locator(".jp-Dialog .jp-mod-accept").first.wait_for(timeout=5_000)
    except PlaywrightTimeout:
        pass  # no dialog this time
    _accept_dialogs(page)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    texts: list[str] = []
    while time.monotonic() < deadline:  # every code cell shows [n] (not [*] or blank) when the run is over
        _accept_dialogs(page)
        texts = prompts.all_inner_texts()
        if texts and all(re.search(r"\[\d+\]", text) for text in texts):
            return
        time.sleep(1.0)
    raise AssertionError(f"notebook did not finish within the test's {TEST_BUDGET_S} s budget: prompts {texts}")


def test_explorer_reacts_in_browser(chromium, lab_url, tmp_path):
    root, url = lab_url
    name = shutil.copy(NOTEBOOK, root / NOTEBOOK.name).name
    page = chromium.new_page(viewport={"width": 1400, "height": 1500})
    timings = {}
    try:
        start = time.monotonic()
        page.goto(url.format(path=name), timeout=WIDGET_TIMEOUT_MS)
        _run_all_cells(page, deadline=start + TEST_BUDGET_S - INTERACTIONS_S)
        timings["run all cells (s)"] = time.monotonic() - start
        explorer = page.locator(EXPLORER).first
        explorer.wait_for(timeout=WIDGET_TIMEOUT_MS)
        explorer.scroll_into_view_if_needed()
        count = page.locator(f"{EXPLORER} .explorer-count").first
        plot = page.locator(f"{EXPLORER} .explorer-plot").first
        text = page.locator(f"{EXPLORER} .explorer-text").first
        timing = page.locator(f"{EXPLORER} .explorer-timing").first
        plot.wait_for(timeout=WIDGET_TIMEOUT_MS)
        calls_at_start = _model_calls(timing)

        for css_class, fraction in (("explorer-temperature", 0.2), ("explorer-top-p", 0.8)):
            readout = page.locator(f"{EXPLORER} .{css_class} .widget-readout").first
            old_value = readout.inner_text()
            old_count, old_plot, old_timing = count.inner_text(), plot.screenshot(), timing.inner_text()
            _drag_slider(page, css_class, fraction)
            _wait_for_change(readout.inner_text, old_value)
            new_count, waited = _wait_for_change(count.inner_text, old_count)
            _wait_for_change(plot.screenshot, old_plot)
            timings[f"{css_class}: browser round trip (s)"] = waited
            new_timing, _ = _wait_for_change(timing.inner_text, old_timing)
            redraw_ms = int(re.search(r"redraw #\d+: (\d+) ms", new_timing).group(1))
            timings[f"{css_class}: kernel redraw (ms)"] = redraw_ms
            assert re.search(r"\d+ candidates? kept", new_count), new_count

        assert _model_calls(timing) == calls_at_start  # moving sliders re-warps cached logits, no forward pass
        old_text = text.inner_text()
        page.locator(f"{EXPLORER} button.explorer-next").first.click()
        new_text, _ = _wait_for_change(text.inner_text, old_text)
        assert len(new_text) > len(old_text) and new_text.startswith(old_text.rstrip()[:20])
        calls_after, _ = _wait_for_change(lambda: _model_calls(timing), calls_at_start)
        assert calls_after == calls_at_start + 1  # one new token = one forward pass

        redraw_s = []  # slider -> new chart in the page, one arrow-key step at a time
        handle = page.locator(f"{EXPLORER} .explorer-temperature .noUi-handle").first
        for _ in range(5):
            old_source, pressed = plot.get_attribute("src"), time.monotonic()
            handle.press("ArrowRight")
            page.wait_for_function("([sel, old]) => document.querySelector(sel).getAttribute('src') !== old",
                                   arg=[f"{EXPLORER} .explorer-plot", old_source], timeout=WIDGET_TIMEOUT_MS)
            redraw_s.append(time.monotonic() - pressed)
        timings["slider -> new chart, median of 5 (s)"] = statistics.median(redraw_s)

        _drag_slider(page, "explorer-temperature", 0.45)  # about T=2.2: odd tokens, long ones without spaces
        generate = page.locator(f"{EXPLORER} button.explorer-generate").first
        lengths, pressed = {len(text.inner_text())}, time.monotonic()
        generate.click()
        page.wait_for_function("(sel) => document.querySelector(sel).disabled",
                               arg=f"{EXPLORER} button.explorer-generate", timeout=WIDGET_TIMEOUT_MS)
        assert "generating" in generate.inner_text()
        while generate.is_disabled() and time.monotonic() - pressed < 60:
            lengths.add(len(text.inner_text()))  # the text grows while the buttons are disabled
            time.sleep(0.2)
        timings["generate 20 (s)"] = time.monotonic() - pressed
        assert not generate.is_disabled() and len(lengths) >= 3, sorted(lengths)

        problems = check_layouts(page, EXPLORER, tmp_path, "lab-explorer", frame_selector=".jp-NotebookPanel")
        print("browser timings:", {key: round(value, 3) for key, value in timings.items()})
        print("screenshots:", tmp_path)
        assert not any(problems.values()), problems
    except BaseException:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
        raise
    finally:
        page.close()
