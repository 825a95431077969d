"""Widget wiring without a browser: controls change the state the outputs are drawn from."""
from __future__ import annotations

import re

import pytest

from course_utils.explorer import SamplingExplorer
from course_utils.sampling import SamplingConfig
from course_utils.widgets import ExplorerWidget, PresetComparisonWidget

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
    small = len(widget.plot.value)
    widget.classroom.value = True
    assert "font-size:1.60em" in widget.text.value and len(widget.plot.value) > small


def test_preset_comparison_shows_each_preset(course_model):
    model, tok = course_model
    presets = {"greedy": SamplingConfig(temperature=0.0), "hot": SamplingConfig(temperature=1.5)}
    comparison = PresetComparisonWidget(model, tok, PROMPT, presets=presets, seed=1, n_tokens=3)
    assert set(comparison.explorers) == {"greedy", "hot"}
    assert all(len(e.generated_ids) == 3 for e in comparison.explorers.values())
    assert "<h4>greedy</h4>" in comparison.columns["greedy"].value
    with pytest.raises(ValueError, match="presets"):
        PresetComparisonWidget(model, tok, PROMPT, presets={})
