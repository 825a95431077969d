"""ipywidgets shells over pure functions (the logic lives in explorer/presets/rope_pair, the figures in plots/).

- ``sampling_explorer``: ``ExplorerWidget`` (lesson 03)
- ``preset_comparison``: ``PresetComparisonWidget`` (lesson 03); its default presets are ``presets.DEFAULT_PRESETS``
- ``explorer_html``: the explorer's HTML views (coloured text, the step log), plain strings without ipywidgets
- ``rope``: ``RopeWidget`` / ``rope_explorer`` (lesson 06)
- ``style``: the shared style sheet and the classroom switch (``classroom=True`` on every widget)
"""
from __future__ import annotations

from course_utils.presets import DEFAULT_PRESETS
from course_utils.widgets.preset_comparison import PresetComparisonWidget
from course_utils.widgets.rope import RopeWidget, rope_explorer
from course_utils.widgets.sampling_explorer import CHART_DPI, COLOUR_KEY, LOG_ROWS, SETTINGS_HINT, ExplorerWidget
from course_utils.widgets.style import CLASSROOM_SCALE

__all__ = ["CHART_DPI", "CLASSROOM_SCALE", "COLOUR_KEY", "DEFAULT_PRESETS", "LOG_ROWS", "SETTINGS_HINT",
           "ExplorerWidget", "PresetComparisonWidget", "RopeWidget", "rope_explorer"]
