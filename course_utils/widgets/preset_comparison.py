"""The preset comparison widget: two to four sampling presets side by side, same prompt and seed (lesson 03).

An ipywidgets shell over `course_utils.presets.compare_presets`; each column shows a preset's coloured text (from
`course_utils.widgets.explorer_html`). ``classroom=True`` (or its toggle) enlarges it for a projector.
"""
from __future__ import annotations

import html

import ipywidgets as widgets

from course_utils.explorer import SamplingExplorer, describe_config
from course_utils.presets import DEFAULT_PRESETS, compare_presets
from course_utils.sampling import SamplingConfig
from course_utils.validation import check_bool, check_int
from course_utils.widgets.explorer_html import coloured_text_html
from course_utils.widgets.style import WIDGET_CLASS, apply_classroom, classroom_toggle, style_holder, wrapping_row


class PresetComparisonWidget:
    """Two to four presets side by side (one column each, wrapping on narrow screens), same prompt and seed."""

    def __init__(self, model, tokenizer, prompt: str, presets: dict[str, SamplingConfig] | None = None,
                 seed: int = 0, n_tokens: int = 20, classroom: bool = False):
        presets = DEFAULT_PRESETS if presets is None else presets
        if not isinstance(presets, dict):
            raise TypeError(f"presets must be a dict of name -> SamplingConfig, got {type(presets).__name__}")
        if not 1 <= len(presets) <= 4:
            raise ValueError(f"give 1 to 4 presets, got {len(presets)}")
        check_int("seed", seed, minimum=0)
        check_int("n_tokens", n_tokens, minimum=1, maximum=200)
        classroom = check_bool("classroom", classroom)
        self.model = model
        self.tokenizer = tokenizer
        self.presets = presets
        self.prompt = widgets.Textarea(value=prompt, description="prompt",
                                       layout=widgets.Layout(width="100%", max_width="48em"))
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                           style={"description_width": "3em"}, layout=widgets.Layout(width="11em"))
        self.n_tokens = widgets.BoundedIntText(value=n_tokens, min=1, max=200, description="tokens",
                                               style={"description_width": "3.5em"},
                                               layout=widgets.Layout(width="11em"))
        self.run_button = widgets.Button(description="generate all", button_style="primary")
        self.run_button.on_click(lambda _: self.run())
        self.classroom = classroom_toggle(classroom)
        self.classroom.observe(lambda change: apply_classroom(self.ui, change["new"]), names="value")
        # each column at least ~16 characters wide, separated by a rule and padding; they wrap on a narrow screen
        self.columns = {name: widgets.HTML(layout=widgets.Layout(
            flex="1 1 16em", min_width="min(16em, 100%)", padding="0 0.8em", margin="0.3em 0",
            border_left="3px solid #d0d0d0")) for name in presets}
        for column in self.columns.values():
            column.add_class("preset-column")
        self.ui = widgets.VBox([style_holder(), self.prompt,
                                wrapping_row([self.seed, self.n_tokens, self.run_button, self.classroom]),
                                wrapping_row(list(self.columns.values()), align_items="flex-start")],
                               layout=widgets.Layout(max_width="100%"))
        self.ui.add_class("preset-comparison")
        self.ui.add_class(WIDGET_CLASS)
        apply_classroom(self.ui, classroom)
        self.explorers: dict[str, SamplingExplorer] = {}
        self.run()

    def run(self) -> None:
        """Generate with every preset and show the coloured texts."""
        self.run_button.disabled = True
        try:
            self.explorers = compare_presets(self.model, self.tokenizer, self.prompt.value, self.presets,
                                             seed=int(self.seed.value), n_tokens=int(self.n_tokens.value))
        finally:
            self.run_button.disabled = False
        for name, explorer in self.explorers.items():
            self.columns[name].value = (f"<h4>{html.escape(name)}</h4>"
                                        f"<small>{html.escape(describe_config(explorer.config))}</small>"
                                        f"{coloured_text_html(explorer.prompt, explorer.records)}")

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.ui)
