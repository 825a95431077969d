"""ipywidgets shells over `course_utils.explorer`: they hold controls and outputs, the logic lives in explorer/plots."""
from __future__ import annotations

import html
import time

import ipywidgets as widgets

from course_utils.explorer import SamplingExplorer, compare_presets, describe_config, log_html, plural
from course_utils.plots.sampling import BEFORE_COLOUR, KEPT_COLOUR, REMOVED_COLOUR, CandidateChart
from course_utils.sampling import SamplingConfig
from course_utils.validation import check_int

CLASSROOM_SCALE = 1.6
CHART_DPI = 80
LOG_ROWS = 8
DEFAULT_PRESETS = {
    "greedy": SamplingConfig(temperature=0.0),
    "top-k 40": SamplingConfig(temperature=1.0, top_k=40),
    "top-p 0.95": SamplingConfig(temperature=1.0, top_p=0.95),
}


SETTINGS_HINT = "<small>temperature 0 = greedy · off: top-k 0, top-p 1, min-p 0, repetition penalty 1</small>"
COLOUR_KEY = (f'<small><span style="color:{BEFORE_COLOUR}">■</span> model probability · '
              f'<span style="color:{KEPT_COLOUR}">■</span> after warping (kept) · '
              f'<span style="color:{REMOVED_COLOUR}">✕ red label</span> removed</small>')


def _slider(kind, description: str, css: str, **kwargs):
    slider = kind(description=description, continuous_update=False, style={"description_width": "12em"},
                  layout=widgets.Layout(width="30em"), **kwargs)
    slider.add_class(css)
    return slider


class ExplorerWidget:
    """Prompt box, warper sliders, seed, buttons; shows candidate bars, their count/mass/entropy, coloured text, log.

    Moving a slider only re-warps the cached logits of the current step (``explorer.model_calls`` stays put);
    ``last_redraw_ms`` holds the time of the latest redraw, ``redraws`` counts them.
    """

    def __init__(self, explorer: SamplingExplorer, generate_n: int = 20, classroom: bool = False):
        generate_n = check_int("generate_n", generate_n, minimum=1)
        if not isinstance(explorer, SamplingExplorer):
            raise TypeError(f"explorer must be a SamplingExplorer, got {type(explorer).__name__}")
        self.explorer = explorer
        self.generate_n = generate_n
        self.last_redraw_ms = 0.0
        self.redraws = 0
        config = explorer.config
        self.prompt = widgets.Textarea(value=explorer.prompt, description="prompt",
                                       layout=widgets.Layout(width="48em", height="4em"))
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
                                           layout=widgets.Layout(width="12em"))
        self.next_button = widgets.Button(description="next token", button_style="primary")
        self.generate_button = widgets.Button(description=f"generate {generate_n}")
        self.reset_button = widgets.Button(description="reset")
        self.classroom = widgets.ToggleButton(value=classroom, description="classroom mode", icon="expand")
        for button, css in ((self.next_button, "explorer-next"), (self.generate_button, "explorer-generate"),
                            (self.reset_button, "explorer-reset"), (self.classroom, "explorer-classroom")):
            button.add_class(css)
        self._charts: dict[float, CandidateChart] = {}  # one reusable chart per font scale
        self.plot = widgets.Image(format="png")
        self.plot.add_class("explorer-plot")
        self.count = widgets.HTML()
        self.count.add_class("explorer-count")
        self.timing = widgets.HTML()
        self.timing.add_class("explorer-timing")
        self.text = widgets.HTML()
        self.text.add_class("explorer-text")
        self.log = widgets.HTML()
        self.log.add_class("explorer-log")

        for slider in self.sliders:
            slider.observe(self._on_settings, names="value")
        self.prompt.observe(self._on_prompt, names="value")
        self.seed.observe(self._on_seed, names="value")
        self.classroom.observe(lambda change: self.refresh(), names="value")
        self.next_button.on_click(lambda _: self._advance(1))
        self.generate_button.on_click(lambda _: self._advance(self.generate_n))
        self.reset_button.on_click(lambda _: self._reset())

        controls = widgets.VBox([self.prompt, *self.sliders,
                                 widgets.HBox([self.seed, self.next_button, self.generate_button, self.reset_button,
                                               self.classroom])])
        key = widgets.HTML(COLOUR_KEY + "<br>" + SETTINGS_HINT)
        chart_column = widgets.VBox([self.plot, key], layout=widgets.Layout(flex="0 0 auto"))
        text_column = widgets.VBox([self.count, self.timing, self.text],
                                   layout=widgets.Layout(flex="1 1 0", min_width="0"))  # wraps instead of overflowing
        self.ui = widgets.VBox([controls, widgets.HBox([chart_column, text_column]), self.log])
        self.ui.add_class("sampling-explorer")
        self.refresh()

    @property
    def sliders(self) -> list:
        return [self.temperature, self.top_k, self.top_p, self.min_p, self.repetition_penalty]

    @property
    def font_scale(self) -> float:
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
        self.explorer.generate(n_tokens)
        self.refresh()

    def _reset(self) -> None:
        self.explorer.reset()
        self.refresh()

    def refresh(self) -> None:
        """Redraw every output from the explorer's state (re-warping the cached logits)."""
        start = time.perf_counter()
        scale = self.font_scale
        table = self.explorer.candidates()
        title = f"next token after {len(self.explorer.ids)} tokens · {describe_config(self.explorer.config)}"
        self.plot.value = self._draw(table, title, scale)
        kept = plural(table.n_kept, "candidate")
        self.count.value = (f'<div style="font-size:{1.1 * scale:.2f}em"><b>{kept}</b> kept · '
                            f'<b>{table.kept_mass:.1%}</b> of the probability mass · entropy '
                            f'<b>{table.entropy_after:.2f}</b> bits (model: {table.entropy_before:.2f})</div>')
        self.text.value = self.explorer.text_html(font_scale=scale)
        self.log.value = log_html(self.explorer.records, last=LOG_ROWS, font_scale=scale)
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
        width = round(chart.figure.get_figwidth() * CHART_DPI)
        self.plot.layout.width = self.plot.layout.min_width = f"{width}px"  # never squeezed by the text next to it
        return png

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.ui)


class PresetComparisonWidget:
    """Two or three presets side by side, generating from the same prompt and seed."""

    def __init__(self, model, tokenizer, prompt: str, presets: dict[str, SamplingConfig] | None = None,
                 seed: int = 0, n_tokens: int = 20):
        presets = DEFAULT_PRESETS if presets is None else presets
        if not isinstance(presets, dict):
            raise TypeError(f"presets must be a dict of name -> SamplingConfig, got {type(presets).__name__}")
        if not 1 <= len(presets) <= 4:
            raise ValueError(f"give 1 to 4 presets, got {len(presets)}")
        check_int("seed", seed, minimum=0)
        check_int("n_tokens", n_tokens, minimum=1, maximum=200)
        self.model = model
        self.tokenizer = tokenizer
        self.presets = presets
        self.prompt = widgets.Textarea(value=prompt, description="prompt", layout=widgets.Layout(width="48em"))
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                           layout=widgets.Layout(width="12em"))
        self.n_tokens = widgets.BoundedIntText(value=n_tokens, min=1, max=200, description="tokens",
                                               layout=widgets.Layout(width="12em"))
        self.run_button = widgets.Button(description="generate all", button_style="primary")
        self.run_button.on_click(lambda _: self.run())
        self.columns = {name: widgets.HTML(layout=widgets.Layout(width=f"{96 // len(presets)}%")) for name in presets}
        self.ui = widgets.VBox([self.prompt, widgets.HBox([self.seed, self.n_tokens, self.run_button]),
                                widgets.HBox(list(self.columns.values()))])
        self.ui.add_class("preset-comparison")
        self.explorers: dict[str, SamplingExplorer] = {}
        self.run()

    def run(self) -> None:
        """Generate with every preset and show the coloured texts."""
        self.explorers = compare_presets(self.model, self.tokenizer, self.prompt.value, self.presets,
                                         seed=int(self.seed.value), n_tokens=int(self.n_tokens.value))
        for name, explorer in self.explorers.items():
            self.columns[name].value = (f"<h4>{name}</h4><small>{describe_config(explorer.config)}</small>"
                                        f"{explorer.text_html()}")

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.ui)
