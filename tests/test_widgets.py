"""Widget wiring without a browser: controls change the state the outputs are drawn from."""
from __future__ import annotations

import re

import pytest

from course_utils.explorer import SamplingExplorer
from course_utils.sampling import SamplingConfig
from course_utils.widgets import CLASSROOM_SCALE, ExplorerWidget, PresetComparisonWidget, RopeWidget, rope_explorer
from course_utils.widgets.style import CLASSROOM_CLASS

PROMPT = "Once upon a time, in a small village,"


@pytest.fixture
def widget(course_model):
    model, tok = course_model
    explorer = SamplingExplorer(model, tok, PROMPT, config=SamplingConfig(temperature=0.7, top_p=0.95), seed=0,
                                max_new_tokens=30)
    return ExplorerWidget(explorer, generate_n=3)


def _kept(widget) -> int:
    return int(re.search(r"<b>(\d+) candidates?</b>", widget.count.value).group(1))


def test_sliders_update_config_and_outputs_without_model_calls(widget):
    calls, plot, count = widget.explorer.model_calls, widget.plot.value, widget.count.value
    widget.temperature.value = 1.5
    assert widget.explorer.config.temperature == 1.5 and widget.count.value != count and widget.plot.value != plot
    widget.top_k.value = 3
    assert widget.explorer.config.top_k == 3 and _kept(widget) == 3
    widget.top_k.value = 0
    widget.top_p.value = 0.01
    assert widget.explorer.config.top_p == 0.01 and _kept(widget) < 3
    widget.top_p.value, widget.min_p.value = 1.0, 1.0
    assert widget.explorer.config.min_p == 1.0 and _kept(widget) == 1
    widget.repetition_penalty.value = 2.0
    assert widget.explorer.config.repetition_penalty == 2.0
    widget.temperature.value = 0.0
    assert widget.explorer.config.is_greedy and widget.explorer.model_calls == calls
    assert widget.last_redraw_ms > 0  # recorded; its speed is measured by benchmarks/timings.py, not asserted here
    widget.next_button.click()
    assert "greedy" in widget.log.value  # the log records the settings of each step


def test_buttons_grow_and_reset_the_text(widget):
    text = widget.text.value
    widget.next_button.click()
    assert len(widget.explorer.generated_ids) == 1 and widget.text.value != text
    assert widget.log.value.count("<tr>") == 2
    widget.generate_button.click()
    assert len(widget.explorer.generated_ids) == 4
    widget.reset_button.click()
    assert widget.explorer.generated_ids == [] and widget.text.value == text


def test_prompt_seed_and_classroom_mode(widget):
    widget.prompt.value = "The capital of France is"
    assert widget.explorer.prompt == "The capital of France is" and "France" in widget.text.value
    widget.next_button.click()
    widget.seed.value = 5
    assert widget.explorer.seed == 5 and widget.explorer.generated_ids == []
    small, small_width = len(widget.plot.value), int(widget.plot.layout.width.removesuffix("px"))
    assert CLASSROOM_CLASS not in widget.ui._dom_classes
    widget.classroom.value = True  # one switch: the whole box gets the class the style sheet scales, the chart grows
    assert CLASSROOM_CLASS in widget.ui._dom_classes and len(widget.plot.value) > small
    assert int(widget.plot.layout.width.removesuffix("px")) == round(small_width * CLASSROOM_SCALE)
    assert f".{CLASSROOM_CLASS}" in widget.ui.children[0].value  # the style sheet travels inside the widget
    widget.classroom.value = False
    assert CLASSROOM_CLASS not in widget.ui._dom_classes


def test_classroom_argument_and_wrapping_text(course_model):
    model, tok = course_model
    explorer = SamplingExplorer(model, tok, PROMPT, config=SamplingConfig(temperature=0.7), max_new_tokens=5)
    widget = ExplorerWidget(explorer, classroom=True)
    assert widget.classroom.value and CLASSROOM_CLASS in widget.ui._dom_classes
    assert "overflow-wrap:anywhere" in widget.text.value
    with pytest.raises(TypeError, match="classroom must be True or False"):
        ExplorerWidget(explorer, classroom=1)


def test_generate_shows_tokens_as_they_come_with_buttons_disabled(widget):
    seen = []  # (text length, buttons disabled, generate label) at each text update while generating

    def watch(change):
        seen.append((len(change["new"]), [b.disabled for b in widget.buttons], widget.generate_button.description))

    widget.text.observe(watch, names="value")
    widget.generate_button.click()
    widget.text.unobserve(watch, names="value")
    during = seen  # the final refresh shows the same text again, so it is no change
    assert len(during) == 3 and [length for length, _, _ in during] == sorted(length for length, _, _ in during)
    assert all(all(disabled) and label == "generating…" for _, disabled, label in during)
    assert not any(b.disabled for b in widget.buttons) and widget.generate_button.description == "generate 3"
    assert len(widget.explorer.generated_ids) == 3 and "model calls" in widget.timing.value


def test_log_table_is_padded_with_a_ruled_header(widget):
    widget.next_button.click()
    assert "<th style=\"padding:" in widget.log.value and "border-bottom:2px" in widget.log.value
    headers = re.findall(r"<th style=\"([^\"]*)\">([^<]*)</th>", widget.log.value)
    assert len(headers) == 8  # headers break between words or at soft hyphens only, never inside a word
    assert all("overflow-wrap:normal" in style and "anywhere" not in style for style, _ in headers)
    assert all(len(word) <= 8 for _, name in headers for part in name.split("&shy;") for word in part.split())


def test_preset_comparison_shows_each_preset(course_model):
    model, tok = course_model
    presets = {"greedy": SamplingConfig(temperature=0.0), "hot": SamplingConfig(temperature=1.5)}
    comparison = PresetComparisonWidget(model, tok, PROMPT, presets=presets, seed=1, n_tokens=3)
    assert set(comparison.explorers) == {"greedy", "hot"}
    assert all(len(e.generated_ids) == 3 for e in comparison.explorers.values())
    assert "<h4>greedy</h4>" in comparison.columns["greedy"].value
    assert all(column.layout.border_left for column in comparison.columns.values())  # a rule between columns
    comparison.classroom.value = True
    assert CLASSROOM_CLASS in comparison.ui._dom_classes
    with pytest.raises(ValueError, match="presets"):
        PresetComparisonWidget(model, tok, PROMPT, presets={})


def test_rope_widget_redraws_and_has_the_classroom_switch():
    rope = RopeWidget(head_dim=8, max_position=16)
    picture, caption = rope.picture.value, rope.caption.value
    rope.query.value = 9
    assert rope.picture.value != picture and "m = 9" in rope.caption.value and rope.caption.value != caption
    width = int(rope.picture.layout.width.removesuffix("px"))
    rope.classroom.value = True
    assert CLASSROOM_CLASS in rope.ui._dom_classes
    assert abs(int(rope.picture.layout.width.removesuffix("px")) - width * CLASSROOM_SCALE) < 0.05 * width
    assert rope.ui.children[1].layout.flex_flow == "row wrap"  # sliders wrap onto new lines instead of shrinking
    box = rope_explorer(head_dim=8, classroom=True)
    assert "rope-explorer" in box._dom_classes and CLASSROOM_CLASS in box._dom_classes
    with pytest.raises(TypeError, match="classroom must be True or False"):
        RopeWidget(classroom="yes")
    with pytest.raises(ValueError, match="finite"):
        RopeWidget(q_pair=(float("nan"), 0.0))


def test_the_widgets_package_exports_each_widget_from_its_own_module():
    from course_utils import presets, widgets

    assert widgets.ExplorerWidget.__module__ == "course_utils.widgets.sampling_explorer"
    assert widgets.PresetComparisonWidget.__module__ == "course_utils.widgets.preset_comparison"
    assert widgets.DEFAULT_PRESETS is presets.DEFAULT_PRESETS
