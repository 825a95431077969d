"""The RoPE widget of lesson 06: sliders for the query position m, the key position n and the pair index i.

A shell over ``course_utils.rope_pair.pair_rotation_state`` (the numbers) and ``plots.positional.rope_pair_figure``
(the picture). ``classroom=True`` (or its toggle) draws everything larger; the sliders wrap onto new lines on a narrow
screen instead of shrinking.
"""
from __future__ import annotations

import io
import time

import ipywidgets as widgets

from course_utils.rope_pair import pair_rotation_state
from course_utils.validation import check_bool, check_int
from course_utils.widgets.style import (
    CLASSROOM_SCALE,
    WIDGET_CLASS,
    apply_classroom,
    classroom_toggle,
    slider_layout,
    style_holder,
    wrapping_row,
)

FIGURE_DPI = 90


class RopeWidget:
    """Three sliders, a one-line caption (q.k depends on m - n only) and the picture of the two rotated pairs.

    ``last_redraw_ms`` holds the time of the latest redraw, ``redraws`` counts them; ``ui`` is the widget to show.
    """

    def __init__(self, q_pair=(1.0, 0.2), k_pair=(0.7, -0.6), head_dim: int = 64, base: float = 100000.0,
                 max_position: int = 64, classroom: bool = False):
        max_position = check_int("max_position", max_position, minimum=1)
        head_dim = check_int("head_dim", head_dim, minimum=2)
        classroom = check_bool("classroom", classroom)
        pair_rotation_state(q_pair, k_pair, 0, 0, 0, head_dim, base)  # validates the pairs, head_dim and base now
        self.q_pair, self.k_pair, self.head_dim, self.base = q_pair, k_pair, head_dim, base
        self.last_redraw_ms = 0.0
        self.redraws = 0
        style = {"description_width": "6.5em"}
        self.query = widgets.IntSlider(value=min(5, max_position), min=0, max=max_position, description="m (query)",
                                       style=style, layout=slider_layout(max_width="24em", min_width="15em"))
        self.key = widgets.IntSlider(value=min(2, max_position), min=0, max=max_position, description="n (key)",
                                     style=style, layout=slider_layout(max_width="24em", min_width="15em"))
        self.pair = widgets.IntSlider(value=0, min=0, max=head_dim // 2 - 1, description="pair i",
                                      style=style, layout=slider_layout(max_width="24em", min_width="15em"))
        for slider, css in ((self.query, "rope-query"), (self.key, "rope-key"), (self.pair, "rope-pair")):
            slider.add_class(css)
        self.classroom = classroom_toggle(classroom)
        self.caption = widgets.HTML()  # HTML, not Label: a long caption wraps instead of being cut with "..."
        self.caption.add_class("rope-caption")
        self.picture = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.picture.add_class("rope-picture")
        for control in (self.query, self.key, self.pair):
            control.observe(self.redraw, names="value")
        self.classroom.observe(self._on_classroom, names="value")
        self.ui = widgets.VBox([style_holder(), wrapping_row([self.query, self.key, self.pair, self.classroom]),
                                self.caption, self.picture], layout=widgets.Layout(max_width="100%"))
        self.ui.add_class("rope-explorer")
        self.ui.add_class(WIDGET_CLASS)
        apply_classroom(self.ui, classroom)
        self.redraw()

    def _on_classroom(self, change) -> None:
        apply_classroom(self.ui, change["new"])
        self.redraw()

    def redraw(self, _change=None) -> None:
        """Recompute the rotation for the sliders' values and redraw caption and picture."""
        import matplotlib.pyplot as plt

        from course_utils.plots.positional import rope_pair_figure

        start = time.perf_counter()
        m, n, i = self.query.value, self.key.value, self.pair.value
        state = pair_rotation_state(self.q_pair, self.k_pair, m, n, i, self.head_dim, self.base)
        self.caption.value = f"<code>{state.caption(m, n, i)}</code>"
        title = f"pair {i}: q rotated by m\u03b8 = {state.q_angle:+.2f} rad, k by n\u03b8 = {state.k_angle:+.2f} rad"
        figure = rope_pair_figure(state.q_rotated, state.k_rotated, title=title)
        scale = CLASSROOM_SCALE if self.classroom.value else 1.0
        buffer = io.BytesIO()
        try:  # "tight" keeps a title wider than the axes whole, as the notebook's inline figures do
            figure.savefig(buffer, format="png", dpi=FIGURE_DPI * scale, bbox_inches="tight")
        finally:
            plt.close(figure)
        png = buffer.getvalue()
        self.picture.value = png
        self.picture.layout.width = f"{int.from_bytes(png[16:20], 'big')}px"  # the PNG's own width (IHDR)
        self.last_redraw_ms = 1000 * (time.perf_counter() - start)
        self.redraws += 1

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.ui)


def rope_explorer(q_pair=(1.0, 0.2), k_pair=(0.7, -0.6), head_dim: int = 64, base: float = 100000.0,
                  max_position: int = 64, classroom: bool = False) -> widgets.VBox:
    """The RoPE widget's box (see :class:`RopeWidget`), ready to show as a cell's last expression."""
    return RopeWidget(q_pair, k_pair, head_dim, base, max_position, classroom).ui
