"""Tests of course_utils.prefix_cache: a shared prompt prefix computed once gives the same tokens and log-probs."""
from __future__ import annotations

import pytest
import torch

from course_utils.generation import generate
from course_utils.option_scoring import option_scores, score_option_batch, score_options
from course_utils.prefix_cache import PrefixCache, build_prefix_cache, prefix_for, shared_prefix
from course_utils.prompt_tasks import load_tasks
from course_utils.prompts import build_prompt
from course_utils.sampling import SamplingConfig

ROWS = [[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 40], [5, 6, 7, 8, 11, 12, 13, 14]]  # 4 shared ids, suffixes of 1-4


def _assert_same_generation(plain, shared, atol=1e-4):
    assert shared.tokens == plain.tokens and shared.finished == plain.finished
    for a, b in zip(plain.logprobs, shared.logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=atol)


def test_shared_prefix_leaves_a_token_in_every_row():
    assert shared_prefix(ROWS) == [5, 6, 7, 8]
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == [1, 2]       # identical rows still keep one token each
    assert shared_prefix([[1, 2], [3, 4]]) == []
    assert shared_prefix([[1, 2, 3]]) == [1, 2]
    for bad in ([], [[]], "abc", [[1], "ab"]):
        with pytest.raises(ValueError, match="rows|row"):
            shared_prefix(bad)


@pytest.mark.parametrize("sampling", [None, SamplingConfig(temperature=0.8, top_k=20, repetition_penalty=1.3)])
def test_generate_with_a_prefix_equals_the_plain_path_tiny(tiny_model, sampling):
    prefix = prefix_for(tiny_model, ROWS)
    assert isinstance(prefix, PrefixCache) and len(prefix) == 4
    plain = generate(tiny_model, ROWS, max_new_tokens=10, sampling=sampling, seed=3, eos_id=96)
    shared = generate(tiny_model, ROWS, max_new_tokens=10, sampling=sampling, seed=3, eos_id=96, prefix=prefix)
    _assert_same_generation(plain, shared)


def test_option_batch_equals_one_prompt_scoring_tiny(tiny_model):
    options = [[3], [4, 5], [6, 7, 8]]
    reference = torch.stack([score_options(tiny_model, row, options) for row in ROWS])
    for prefix in (None, prefix_for(tiny_model, ROWS)):
        for batch_size in (1, 2, 8):
            got = score_option_batch(tiny_model, ROWS, options, prefix=prefix, batch_size=batch_size)
            assert got.shape == (3, 3) and torch.allclose(got, reference, atol=1e-5)
    normalised = score_option_batch(tiny_model, ROWS, options, length_normalize=True,
                                    prefix=prefix_for(tiny_model, ROWS))
    assert torch.allclose(normalised, reference / torch.tensor([1.0, 2.0, 3.0]), atol=1e-5)


def test_bad_prefix_inputs_are_refused(tiny_model, tiny_config):
    prefix = build_prefix_cache(tiny_model, [5, 6, 7, 8])
    with pytest.raises(ValueError, match="does not start with"):
        generate(tiny_model, [[5, 6, 7, 9, 1]], max_new_tokens=2, prefix=prefix)
    with pytest.raises(ValueError, match="at least one token after"):
        generate(tiny_model, [[5, 6, 7, 8]], max_new_tokens=2, prefix=prefix)
    with pytest.raises(TypeError, match="PrefixCache"):
        generate(tiny_model, ROWS, max_new_tokens=2, prefix=[5, 6, 7, 8])
    with pytest.raises(ValueError, match="beam search"):
        generate(tiny_model, ROWS, max_new_tokens=2, num_beams=2, prefix=prefix)
    with pytest.raises(TypeError, match="PrefixCache"):
        score_option_batch(tiny_model, ROWS, [[3]], prefix="no")
    with pytest.raises(ValueError, match="ids must hold"):
        build_prefix_cache(tiny_model, [])
    with pytest.raises(ValueError, match=r"\[0, 96\]"):
        build_prefix_cache(tiny_model, [5, 97])
    with pytest.raises(TypeError, match="ids"):
        build_prefix_cache(tiny_model, 5)
    with pytest.raises(ValueError, match="prompts"):
        score_option_batch(tiny_model, [], [[3]])
    torch.manual_seed(1)
    other = type(tiny_model)(type(tiny_config)(**{**tiny_config.__dict__, "n_layers": 3})).eval()
    with pytest.raises(ValueError, match="build it with build_prefix_cache"):
        generate(other, ROWS, max_new_tokens=2, prefix=prefix)


def test_prefix_cache_on_the_course_model(course_model):
    """Few-shot prompts: same greedy tokens and log-probs, and same option scores, with and without sharing."""
    model, tok = course_model
    tasks = load_tasks()
    task = tasks["dates"]
    rows = [build_prompt(task, "few-shot", item.question, 3, 0).token_ids(tok) for item in task.items[:3]]
    prefix = prefix_for(model, rows)
    assert len(prefix) > 0.8 * min(len(r) for r in rows)  # the examples are most of each prompt
    plain = generate(model, rows, max_new_tokens=8, eos_id=tok.eos_id)
    _assert_same_generation(plain, generate(model, rows, max_new_tokens=8, eos_id=tok.eos_id, prefix=prefix))
    topic = tasks["topic"]
    items = list(topic.items[:3])
    rows = [build_prompt(topic, "few-shot", item.question, 3, 0).token_ids(tok) for item in items]
    reference = torch.stack([score_options(model, row, [tok.encode(o) for o in topic.options]) for row in rows])
    assert torch.allclose(option_scores(model, tok, topic, "few-shot", items), reference, atol=1e-3)
