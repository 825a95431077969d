"""ipywidgets shells over pure functions (the logic lives in explorer/rope_pair, the figures in plots/).

- ``sampling_explorer``: ``ExplorerWidget`` and ``PresetComparisonWidget`` (lesson 03)
- ``explorer_html``: the explorer's HTML views (coloured text, the step log), plain strings without ipywidgets
- ``rope``: ``RopeWidget`` / ``rope_explorer`` (lesson 06)
- ``style``: the shared style sheet and the classroom switch (``classroom=True`` on every widget)

``course_utils.rope_widget`` still re-exports ``rope_explorer`` and ``pair_rotation_state`` for one release (this
package replaced the modules ``course_utils/widgets.py`` and ``course_utils/rope_widget.py``).
"""
from __future__ import annotations

from course_utils.widgets.rope import RopeWidget, rope_explorer
from course_utils.widgets.sampling_explorer import (
    CHART_DPI,
    COLOUR_KEY,
    DEFAULT_PRESETS,
    LOG_ROWS,
    SETTINGS_HINT,
    ExplorerWidget,
    PresetComparisonWidget,
)
from course_utils.widgets.style import CLASSROOM_SCALE

__all__ = ["CHART_DPI", "CLASSROOM_SCALE", "COLOUR_KEY", "DEFAULT_PRESETS", "LOG_ROWS", "SETTINGS_HINT",
           "ExplorerWidget", "PresetComparisonWidget", "RopeWidget", "rope_explorer"]
