"""Old home of the RoPE widget, kept for one release so that existing notebooks keep working.

Deprecated location: import ``rope_explorer`` from ``course_utils.widgets`` (or ``course_utils.widgets.rope``) and
``pair_rotation_state`` from ``course_utils.rope_pair``. This re-export is removed in the release after next.
"""
from __future__ import annotations

from course_utils.rope_pair import PairRotation, pair_rotation_state
from course_utils.widgets.rope import RopeWidget, rope_explorer

__all__ = ["PairRotation", "RopeWidget", "pair_rotation_state", "rope_explorer"]
