"""The sampling explorer widget: an ipywidgets shell over `course_utils.explorer` (lesson 03).

It holds controls and outputs only; the state lives in `course_utils.explorer`, its HTML views in
`course_utils.widgets.explorer_html`, the chart in `course_utils.plots.sampling`. It takes ``classroom=True`` (or the
"classroom mode" toggle) for a projector.
"""
from __future__ import annotations

import html
import time

import ipywidgets as widgets

from course_utils.candidates import plural
from course_utils.explorer import SamplingExplorer, describe_config
from course_utils.plots.sampling import BEFORE_COLOUR, KEPT_COLOUR, REMOVED_COLOUR, CandidateChart
from course_utils.sampling import SamplingConfig
from course_utils.validation import check_bool, check_int
from course_utils.widgets.explorer_html import coloured_text_html, log_html
from course_utils.widgets.style import (
    BUSY_CLASS,
    CLASSROOM_SCALE,
    WIDGET_CLASS,
    apply_classroom,
    classroom_toggle,
    slider_layout,
    style_holder,
    wrapping_row,
)

CHART_DPI = 80
LOG_ROWS = 8

SETTINGS_HINT = "<small>temperature 0 = greedy · off: top-k 0, top-p 1, min-p 0, repetition penalty 1</small>"
COLOUR_KEY = (f'<small><span style="color:{BEFORE_COLOUR}">■</span> model probability · '
              f'<span style="color:{KEPT_COLOUR}">■</span> after warping (kept) · '
              f'<span style="color:{REMOVED_COLOUR}">✕ red label</span> removed</small>')


def _slider(kind, description: str, css: str, **kwargs):
    slider = kind(description=description, continuous_update=False, style={"description_width": "9.5em"},
                  layout=slider_layout(), **kwargs)
    slider.add_class(css)
    return slider


class ExplorerWidget:
    """Prompt box, warper sliders, seed, buttons; shows candidate bars, their count/mass/entropy, coloured text, log.

    Moving a slider only re-warps the cached logits of the current step (``explorer.model_calls`` stays put);
    ``last_redraw_ms`` holds the time of the latest redraw, ``redraws`` counts them. "generate N" shows each token
    as it comes, with the buttons disabled until it is done.
    """

    def __init__(self, explorer: SamplingExplorer, generate_n: int = 20, classroom: bool = False):
        generate_n = check_int("generate_n", generate_n, minimum=1)
        if not isinstance(explorer, SamplingExplorer):
            raise TypeError(f"explorer must be a SamplingExplorer, got {type(explorer).__name__}")
        classroom = check_bool("classroom", classroom)
        self.explorer = explorer
        self.generate_n = generate_n
        self.last_redraw_ms = 0.0
        self.redraws = 0
        config = explorer.config
        self.prompt = widgets.Textarea(value=explorer.prompt, description="prompt",
                                       layout=widgets.Layout(width="100%", max_width="48em", height="4.5em"))
        self.prompt.add_class("explorer-prompt")
        self.temperature = _slider(widgets.FloatSlider, "temperature", "explorer-temperature",
                                   value=config.temperature, min=0.0, max=5.0, step=0.05)
        self.top_k = _slider(widgets.IntSlider, "top-k", "explorer-top-k",
                             value=config.top_k, min=0, max=200, step=1)
        self.top_p = _slider(widgets.FloatSlider, "top-p", "explorer-top-p",
                             value=config.top_p, min=0.01, max=1.0, step=0.01)
        self.min_p = _slider(widgets.FloatSlider, "min-p", "explorer-min-p",
                             value=config.min_p, min=0.0, max=1.0, step=0.01)
        self.repetition_penalty = _slider(widgets.FloatSlider, "repetition penalty", "explorer-repetition",
                                          value=config.repetition_penalty, min=1.0, max=3.0, step=0.05)
        self.seed = widgets.BoundedIntText(value=explorer.seed, min=0, max=2**31 - 1, description="seed",
                                           style={"description_width": "3em"}, layout=widgets.Layout(width="11em"))
        self.next_button = widgets.Button(description="next token", button_style="primary")
        self.generate_button = widgets.Button(description=f"generate {generate_n}")
        self.reset_button = widgets.Button(description="reset")
        self.classroom = classroom_toggle(classroom)
        for button, css in ((self.next_button, "explorer-next"), (self.generate_button, "explorer-generate"),
                            (self.reset_button, "explorer-reset"), (self.classroom, "explorer-classroom")):
            button.add_class(css)
        self._charts: dict[float, CandidateChart] = {}  # one reusable chart per font scale
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.plot.add_class("explorer-plot")
        self.count = widgets.HTML()
        self.count.add_class("explorer-count")
        self.timing = widgets.HTML()
        self.timing.add_class("explorer-timing")
        self.text = widgets.HTML()
        self.text.add_class("explorer-text")
        self.log = widgets.HTML(layout=widgets.Layout(max_width="100%", overflow="auto"))
        self.log.add_class("explorer-log")

        for slider in self.sliders:
            slider.observe(self._on_settings, names="value")
        self.prompt.observe(self._on_prompt, names="value")
        self.seed.observe(self._on_seed, names="value")
        self.classroom.observe(self._on_classroom, names="value")
        self.next_button.on_click(lambda _: self._advance(1))
        self.generate_button.on_click(lambda _: self._advance(self.generate_n))
        self.reset_button.on_click(lambda _: self._reset())

        buttons = wrapping_row([self.seed, self.next_button, self.generate_button, self.reset_button,
                                self.classroom])
        controls = widgets.VBox([self.prompt, *self.sliders, buttons], layout=widgets.Layout(max_width="100%"))
        key = widgets.HTML(COLOUR_KEY + "<br>" + SETTINGS_HINT)
        key.add_class("explorer-key")
        # the chart keeps its drawn width but may shrink to the screen; the text takes the rest of the row, or goes
        # below the chart when less than ~18 characters' width is left (a narrow screen, classroom mode)
        chart_column = widgets.VBox([self.plot, key], layout=widgets.Layout(flex="0 1 auto", min_width="0",
                                                                            max_width="100%"))
        text_column = widgets.VBox([self.count, self.timing, self.text],
                                   layout=widgets.Layout(flex="1 1 18em", min_width="min(18em, 100%)",
                                                         max_width="100%"))
        self.ui = widgets.VBox([style_holder(), controls, wrapping_row([chart_column, text_column],
                                                                       align_items="flex-start"), self.log],
                               layout=widgets.Layout(max_width="100%"))
        self.ui.add_class("sampling-explorer")
        self.ui.add_class(WIDGET_CLASS)
        apply_classroom(self.ui, classroom)
        self.refresh()

    @property
    def sliders(self) -> list:
        return [self.temperature, self.top_k, self.top_p, self.min_p, self.repetition_penalty]

    @property
    def buttons(self) -> list:
        return [self.next_button, self.generate_button, self.reset_button]

    @property
    def font_scale(self) -> float:
        """How large the chart is drawn (the page's CSS scales everything else)."""
        return CLASSROOM_SCALE if self.classroom.value else 1.0

    def settings(self) -> SamplingConfig:
        """The SamplingConfig the sliders describe."""
        return SamplingConfig(temperature=self.temperature.value, top_k=self.top_k.value, top_p=self.top_p.value,
                              min_p=self.min_p.value, repetition_penalty=self.repetition_penalty.value)

    def _on_settings(self, change) -> None:
        try:
            config = self.settings()
        except (TypeError, ValueError) as error:  # e.g. a NaN typed into a slider: keep the last good settings
            self._show_settings(self.explorer.config)
            self.timing.value = f"<small><b>setting refused:</b> {html.escape(str(error))}</small>"
            return
        self.explorer.config = config
        self.refresh()

    def _on_classroom(self, change) -> None:
        apply_classroom(self.ui, change["new"])
        self.refresh()

    def _show_settings(self, config: SamplingConfig) -> None:
        """Put ``config``'s values back on the sliders without triggering a redraw per slider."""
        values = (config.temperature, config.top_k, config.top_p, config.min_p, config.repetition_penalty)
        for slider, value in zip(self.sliders, values):
            slider.unobserve(self._on_settings, names="value")
            slider.value = value
            slider.observe(self._on_settings, names="value")

    def _on_prompt(self, change) -> None:
        if change["new"].strip():
            self.explorer.set_prompt(change["new"])
            self.refresh()

    def _on_seed(self, change) -> None:
        self.explorer.set_seed(int(change["new"]))
        self.refresh()

    def _advance(self, n_tokens: int) -> None:
        """Generate up to ``n_tokens``; for more than one, show each token as it comes, buttons disabled meanwhile."""
        if n_tokens == 1:
            self.explorer.step()
            self.refresh()
            return
        label = self.generate_button.description
        self.generate_button.description = "generating…"  # first: the page sees the label before the disabled state
        for button in self.buttons:
            button.disabled = True
        self.ui.add_class(BUSY_CLASS)
        try:
            for done in range(1, n_tokens + 1):
                if self.explorer.step() is None:
                    break
                self.text.value = coloured_text_html(self.explorer.prompt, self.explorer.records)
                self.timing.value = f'<small class="course-busy-note">generating… {done}/{n_tokens} tokens</small>'
        finally:
            self.generate_button.description = label
            for button in self.buttons:
                button.disabled = False
            self.ui.remove_class(BUSY_CLASS)
            self.refresh()

    def _reset(self) -> None:
        self.explorer.reset()
        self.refresh()

    def refresh(self) -> None:
        """Redraw every output from the explorer's state (re-warping the cached logits)."""
        start = time.perf_counter()
        table = self.explorer.candidates()
        title = f"next token after {len(self.explorer.ids)} tokens · {describe_config(self.explorer.config)}"
        self.plot.value = self._draw(table, title, self.font_scale)
        kept = plural(table.n_kept, "candidate")
        self.count.value = (f'<div style="font-size:1.1em"><b>{kept}</b> kept · '
                            f'<b>{table.kept_mass:.1%}</b> of the probability mass · entropy '
                            f'<b>{table.entropy_after:.2f}</b> bits (model: {table.entropy_before:.2f})</div>')
        self.text.value = coloured_text_html(self.explorer.prompt, self.explorer.records)
        self.log.value = log_html(self.explorer.records, last=LOG_ROWS)
        self.last_redraw_ms = 1000 * (time.perf_counter() - start)
        self.redraws += 1
        self.timing.value = (f"<small>redraw #{self.redraws}: {self.last_redraw_ms:.0f} ms · "
                             f"model calls {self.explorer.model_calls}</small>")

    def _draw(self, table, title: str, scale: float) -> bytes:
        if scale not in self._charts:
            self._charts[scale] = CandidateChart(len(table.labels), font_scale=scale)
        chart = self._charts[scale]
        chart.update(**table.plot_kwargs(), title=title)
        png = chart.png(dpi=CHART_DPI)
        self.plot.layout.width = f"{round(chart.figure.get_figwidth() * CHART_DPI)}px"  # drawn size, or the screen
        return png

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.ui)
