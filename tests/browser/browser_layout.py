"""Layout checks shared by the browser tests: every part of a widget inside the visible width, no text cut off.

``layout_problems`` measures element boxes in the page (``getBoundingClientRect``) and returns readable problems
(an empty list when the layout is fine). ``check_layouts`` runs it at the sizes and modes a classroom meets.
"""
from __future__ import annotations

import time
from pathlib import Path

VIEWPORTS = ((1024, 768), (1920, 1080))  # a school projector, a full-HD screen

# Every visible element under the widget must lie inside [left, right] of the frame (the viewport, narrowed to the
# frame element when one is named, e.g. JupyterLab's notebook panel). An element holding text must not overflow its
# own box (clipped by overflow:hidden, an ellipsis, or spilling over its neighbours); text inputs scroll natively.
_MEASURE = """([rootSelector, frameSelector]) => {
  const root = document.querySelector(rootSelector);
  if (!root) return [`no element matches ${rootSelector}`];
  const viewport = document.documentElement.clientWidth;
  let left = 0, right = viewport;
  const frame = frameSelector ? document.querySelector(frameSelector) : null;
  if (frame) {
    const box = frame.getBoundingClientRect();
    left = Math.max(left, box.left); right = Math.min(right, box.right);
  }
  const problems = [];
  const name = (el) => el.tagName.toLowerCase() + [...el.classList].slice(0, 3).map((c) => '.' + c).join('')
    + (el.textContent.trim() ? ` "${el.textContent.trim().slice(0, 30)}"` : '');
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (el.closest('.course-style') || el.tagName === 'STYLE') continue;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || box.width === 0 || box.height === 0) continue;
    if (box.left < left - 1 || box.right > right + 1) {
      problems.push(`${name(el)} spans x ${Math.round(box.left)}..${Math.round(box.right)}, visible ` +
                    `${Math.round(left)}..${Math.round(right)}`);
    }
    const ownText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!ownText || ['TEXTAREA', 'INPUT'].includes(el.tagName) || style.display === 'inline') continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} cuts its text: ${el.scrollWidth} px of text in ${el.clientWidth} px`);
    }
    if (style.overflowY !== 'visible' && el.scrollHeight > el.clientHeight + 2) {
      problems.push(`${name(el)} cuts its text vertically: ${el.scrollHeight} px in ${el.clientHeight} px`);
    }
  }
  return problems.slice(0, 12);
}"""


def layout_problems(page, root_selector: str, frame_selector: str | None = None) -> list[str]:
    """Problems of the widget ``root_selector`` on ``page`` as it is laid out now (empty list: none)."""
    return page.evaluate(_MEASURE, [root_selector, frame_selector])


def set_classroom(page, root_selector: str, on: bool, wait_s: float = 20.0) -> None:
    """Click the widget's classroom toggle if needed; wait until the widget's box shows the mode."""
    root = page.locator(root_selector).first
    if ("course-classroom" in (root.get_attribute("class") or "")) != on:
        root.locator(".course-classroom-toggle").first.click()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if ("course-classroom" in (root.get_attribute("class") or "")) == on:
            page.wait_for_timeout(800)  # the kernel redraws the chart at the new size
            return
        time.sleep(0.1)
    raise AssertionError(f"classroom mode did not turn {'on' if on else 'off'} within {wait_s} s")


def check_layouts(page, root_selector: str, shots: Path, prefix: str,
                  frame_selector: str | None = None) -> dict[str, list[str]]:
    """Lay the widget out at each viewport in normal and classroom mode; screenshot each; return problems per case."""
    found = {}
    for classroom in (False, True):
        set_classroom(page, root_selector, classroom)
        for width, height in VIEWPORTS:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(400)  # reflow
            case = f"{prefix}-{width}x{height}-{'classroom' if classroom else 'normal'}"
            found[case] = layout_problems(page, root_selector, frame_selector)
            widget = page.locator(root_selector).first
            # a page that scrolls inside a container (Voila, JupyterLab) only paints what is in view: make the
            # viewport as tall as the widget for its picture (the width, which the layout depends on, stays)
            tall = round(widget.bounding_box()["height"]) + 200
            page.set_viewport_size({"width": width, "height": max(height, tall)})
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(shots / f"{case}.png"))
            page.set_viewport_size({"width": width, "height": height})
    return found
