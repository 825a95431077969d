"""The widgets' shared look: one style sheet, and the classroom switch that scales every part of a widget at once.

ipywidgets draws every control from CSS variables (``--jp-widgets-font-size``, ``--jp-widgets-inline-height``, ...).
Classroom mode overrides those variables on the widget's outer box only, so sliders, buttons, readouts, labels,
the colour key, hints, tables and text all grow together; the matplotlib charts are redrawn larger by the widgets.
The sheet travels inside the widget (a hidden HTML child), so it also applies in Voila and in saved widget state.
"""
from __future__ import annotations

import ipywidgets as widgets

from course_utils.validation import check_bool

CLASSROOM_SCALE = 1.6          # how much larger classroom mode draws everything
WIDGET_CLASS = "course-widget"  # on the outer box of every course widget
CLASSROOM_CLASS = "course-classroom"  # added to that box while classroom mode is on
BUSY_CLASS = "course-busy"     # added while a long action (e.g. "generate 20") runs

_BASE_PX = 13  # ipywidgets' own font size


def _px(value: float) -> str:
    return f"{round(value * CLASSROOM_SCALE)}px"


STYLE_SHEET = f"""<style>
.{WIDGET_CLASS} {{ font-size: var(--jp-widgets-font-size); max-width: 100%; box-sizing: border-box; }}
.{WIDGET_CLASS}.{CLASSROOM_CLASS} {{
  --jp-widgets-font-size: {_px(_BASE_PX)};
  --jp-widgets-inline-height: {_px(28)};
  --jp-widgets-inline-margin: {_px(4)};
  --jp-widgets-inline-width-short: {_px(148)};
  --jp-widgets-inline-width-tiny: {_px(72)};
  --jp-widgets-slider-handle-size: {_px(16)};
  --jp-widgets-slider-track-thickness: {_px(4)};
  --jp-widgets-input-padding: {_px(4)};
}}
.{WIDGET_CLASS}.{WIDGET_CLASS} .jupyter-widget-html > .jupyter-widget-html-content {{ line-height: 1.45; }}
.{WIDGET_CLASS} img {{ max-width: 100%; height: auto; object-fit: contain; }}
.{WIDGET_CLASS} .course-tokens {{ white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word; }}
.{WIDGET_CLASS} .jupyter-button {{ width: auto; min-width: var(--jp-widgets-inline-width-tiny); padding: 0 0.9em; }}
.{WIDGET_CLASS}.{BUSY_CLASS} .course-busy-note {{ font-weight: bold; }}
</style>"""


def style_holder() -> widgets.HTML:
    """A hidden HTML widget carrying the style sheet (put it first in the widget's outer box)."""
    holder = widgets.HTML(STYLE_SHEET, layout=widgets.Layout(display="none"))
    holder.add_class("course-style")
    return holder


def classroom_toggle(value: bool) -> widgets.ToggleButton:
    """The classroom switch shown on every widget."""
    value = check_bool("classroom", value)
    toggle = widgets.ToggleButton(value=value, description="classroom mode",
                                  tooltip="larger controls, charts and text for a projector")
    toggle.add_class("course-classroom-toggle")
    return toggle


def apply_classroom(box: widgets.Box, on: bool) -> None:
    """Add or remove the classroom class on a widget's outer box."""
    if on:
        box.add_class(CLASSROOM_CLASS)
    else:
        box.remove_class(CLASSROOM_CLASS)


def wrapping_row(children: list, **layout) -> widgets.HBox:
    """A row whose items wrap onto the next line instead of shrinking when the screen is narrow."""
    settings = {"flex_flow": "row wrap", "align_items": "center", "max_width": "100%", **layout}
    return widgets.HBox(children, layout=widgets.Layout(**settings))


def slider_layout(max_width: str = "34em", min_width: str = "16em") -> widgets.Layout:
    """Sliders fill their row up to ``max_width`` and never shrink below ``min_width`` (the row wraps instead)."""
    return widgets.Layout(width="100%", max_width=max_width, min_width=f"min({min_width}, 100%)")
