"""The explorer's pure logic: candidate tables on a grid of settings (extremes included), caching, colours, figures."""
from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from course_utils.candidates import candidate_table, entropy_bits, token_label
from course_utils.explorer import SamplingExplorer
from course_utils.generation import generate
from course_utils.plots.sampling import CandidateChart, candidate_bars, candidate_count_curve, candidate_grid
from course_utils.sampling import SamplingConfig
from course_utils.widgets.explorer_html import coloured_text_html, log_html, probability_colour

PROMPT = "Once upon a time, in a small village,"
# Extreme settings a learner can reach with the sliders: T = 0.05 and 5, k = 1, p = 0.01, min_p = 1, penalty = 2
# (plus the neutral values).
GRID = [SamplingConfig(temperature=t, top_k=k, top_p=p, min_p=m, repetition_penalty=r)
        for t, k, p, m, r in itertools.product([0.0, 0.05, 1.0, 5.0], [0, 1, 40], [0.01, 1.0], [0.0, 1.0], [1.0, 2.0])]


@pytest.fixture(scope="module")
def explorer(course_model):
    model, tok = course_model
    return SamplingExplorer(model, tok, PROMPT, seed=0, top_n=8, max_new_tokens=16)


def test_grid_of_settings_never_empty_never_nan(explorer):
    logits = explorer.next_logits()
    labels = explorer.tokenizer.token_strings(torch.topk(logits, 8).indices.tolist())
    for config in GRID:
        table = candidate_table(logits, config, labels, explorer.ids)
        assert table.n_kept >= 1, config
        assert 0 < table.kept_mass <= 1 + 1e-9, config
        values = [table.kept_mass, table.entropy_before, table.entropy_after, *table.prob_before, *table.prob_after]
        assert all(math.isfinite(v) for v in values), config
        assert sum(table.prob_after) <= 1 + 1e-9 and sum(table.prob_before) <= 1 + 1e-9, config
        assert any(table.kept), config  # the most likely (or the penalised arg-max) token is among the top 8
        single = config.is_greedy or config.top_k == 1 or config.min_p == 1.0
        if single or (config.top_p == 0.01 and config.temperature <= 1):  # at T = 5 even 1% of the mass is 38 tokens
            assert table.n_kept == 1 and table.entropy_after == 0.0, config


def test_grid_figures_are_produced(explorer):
    logits = explorer.next_logits()
    labels = explorer.tokenizer.token_strings(torch.topk(logits, 8).indices.tolist())
    for config in GRID[::5]:
        fig = candidate_bars(**candidate_table(logits, config, labels, explorer.ids).plot_kwargs(), title=str(config))
        assert isinstance(fig, Figure) and fig.axes[0].get_yticklabels()
        plt.close(fig)


def test_summaries_follow_the_settings(explorer):
    logits = explorer.next_logits()
    table = lambda **kw: candidate_table(logits, SamplingConfig(**kw), ["?"] * 4, explorer.ids)  # noqa: E731
    assert table(top_k=5).n_kept == 5
    assert table().n_kept == logits.shape[0] and abs(table().kept_mass - 1) < 1e-9
    assert table(top_p=0.9).kept_mass >= 0.9
    assert table(temperature=0.5).entropy_after < table().entropy_after < table(temperature=2.0).entropy_after
    assert table().entropy_before == table(temperature=2.0).entropy_before  # the model's own entropy


def test_changing_settings_does_not_rerun_the_model(explorer):
    explorer.reset()
    explorer.candidates()
    calls = explorer.model_calls
    for config in GRID[:10]:
        explorer.config = config
        explorer.candidates()
    assert explorer.model_calls == calls
    explorer.config = SamplingConfig()
    explorer.step()
    explorer.candidates()
    assert explorer.model_calls == calls + 1  # one new position, one forward pass (KV cache)


def test_steps_match_library_generate(course_model):
    model, tok = course_model
    config = SamplingConfig(temperature=0.9, top_p=0.9, repetition_penalty=1.3)
    explorer = SamplingExplorer(model, tok, PROMPT, config=config, seed=3, max_new_tokens=8)
    records = explorer.generate(8)
    reference = generate(model, [explorer.prompt_ids], max_new_tokens=8, sampling=config, seed=3)
    assert explorer.generated_ids == reference.tokens[0][:len(records)]
    assert explorer.text.startswith(PROMPT) and len(explorer.text) > len(PROMPT)
    assert all(0 < r.prob_model <= 1 and 0 < r.prob_sampled <= 1 and r.n_kept >= 1 for r in records)


def test_reset_and_seed_reproduce_the_text(course_model):
    model, tok = course_model
    explorer = SamplingExplorer(model, tok, PROMPT, config=SamplingConfig(temperature=1.5), seed=7, max_new_tokens=5)
    first = [r.token_id for r in explorer.generate(5)]
    assert explorer.finished and explorer.step() is None
    explorer.reset()
    assert explorer.generated_ids == [] and [r.token_id for r in explorer.generate(5)] == first
    explorer.set_seed(8)
    assert explorer.generated_ids == []


def test_bad_arguments_raise(course_model):
    model, tok = course_model
    with pytest.raises(ValueError, match="prompt"):
        SamplingExplorer(model, tok, "   ")
    with pytest.raises(ValueError, match="top_n"):
        SamplingExplorer(model, tok, PROMPT, top_n=0)
    explorer = SamplingExplorer(model, tok, PROMPT, max_new_tokens=2)
    with pytest.raises(ValueError, match="seed"):
        explorer.set_seed(-1)
    with pytest.raises(ValueError, match="top_p"):
        explorer.update_config(top_p=0.0)
    with pytest.raises(ValueError, match="n_tokens"):
        explorer.generate(0)
    with pytest.raises(ValueError, match="probability"):
        probability_colour(1.5)
    with pytest.raises(ValueError, match="1-D"):
        entropy_bits(torch.zeros(2, 3))


def test_entropy_and_labels():
    assert entropy_bits(torch.zeros(4)) == pytest.approx(2.0)
    assert entropy_bits(torch.tensor([0.0, -math.inf, -math.inf])) == 0.0
    assert token_label(" a\n") == "␣a↵" and token_label("") == "∅"
    assert probability_colour(0.0) != probability_colour(1.0)


def test_html_outputs_escape_and_colour(course_model):
    model, tok = course_model
    explorer = SamplingExplorer(model, tok, "<b>1 < 2</b>", config=SamplingConfig(temperature=0.0), max_new_tokens=3)
    explorer.generate(3)
    page = coloured_text_html(explorer.prompt, explorer.records)
    assert "&lt;b&gt;" in page and page.count('class="explorer-token"') == 3
    assert log_html(explorer.records, last=2).count("<tr>") == 3  # header + 2 rows


def test_count_curve_and_grid_figures():
    fig = candidate_count_curve([1, 5, 300, 2])
    assert isinstance(fig, Figure)
    plt.close(fig)
    panel = dict(labels=["a", "b"], prob_before=[0.6, 0.4], prob_after=[1.0, 0.0], kept=[True, False])
    fig = candidate_grid([panel, panel, panel, panel], ncols=3)
    assert sum(ax.get_visible() for ax in fig.axes) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="one length"):
        candidate_bars(labels=["a"], prob_before=[0.5, 0.5], prob_after=[1.0], kept=[True])
    with pytest.raises(ValueError, match="positive"):
        candidate_count_curve([0, 1])


def test_reusable_chart_redraws_new_candidates():
    chart = CandidateChart(n_rows=2)
    chart.update(labels=["a", "b"], prob_before=[0.6, 0.4], prob_after=[1.0, 0.0], kept=[True, False])
    first = chart.png()
    chart.update(labels=["a", "c"], prob_before=[0.6, 0.4], prob_after=[0.6, 0.4], kept=[True, True])
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and chart.png() != first
    assert [t.get_text() for t in chart.axes.get_yticklabels()] == ["a", "c"]
    with pytest.raises(ValueError, match="2 rows"):
        chart.update(labels=["a"], prob_before=[1.0], prob_after=[1.0], kept=[True])
