"""Warpers and SamplingConfig: Hugging Face semantics, statistical correctness of draws, argument checks."""
import numpy as np
import pytest
import torch
from references import import_reference

from course_utils.sampling import (
    SamplingConfig,
    min_p,
    repetition_penalty,
    sample_next,
    temperature,
    top_k,
    top_p,
    warp_logits,
)

INF = float("-inf")


def probs_logits(*probs):
    return torch.tensor(probs, dtype=torch.float32).log()


def kept(logits):
    return (~torch.isinf(logits)).nonzero().flatten().tolist()


def test_top_k_one_is_greedy():
    logits = torch.randn(64, 500, generator=torch.Generator().manual_seed(0))
    draws = sample_next(logits, SamplingConfig(top_k=1), torch.Generator().manual_seed(1))
    assert torch.equal(draws, logits.argmax(-1))
    assert torch.equal(sample_next(logits, SamplingConfig(temperature=0)), logits.argmax(-1))


def test_neutral_settings_change_nothing():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(warp_logits(logits, SamplingConfig()), logits)
    assert torch.equal(top_p(logits, 1.0), logits)
    assert torch.equal(temperature(logits, 1.0), logits)
    assert torch.equal(min_p(logits, 0.0), logits)
    assert torch.equal(top_k(logits, 0), logits)
    assert torch.equal(repetition_penalty(logits, torch.zeros(3, 4, dtype=torch.long), 1.0), logits)


def test_top_k_keeps_ties_with_kth():
    logits = torch.tensor([3.0, 1.0, 1.0, 0.5, 1.0, -2.0])
    assert kept(top_k(logits, 2)) == [0, 1, 2, 4]
    assert kept(top_k(logits, 1)) == [0]
    assert torch.equal(top_k(logits, 100), logits)


def test_top_p_keeps_the_crossing_token():
    logits = probs_logits(0.1, 0.5, 0.3, 0.05, 0.05)
    assert kept(top_p(logits, 0.6)) == [1, 2]  # 0.5 < 0.6, so the 0.3 token that crosses 0.6 stays
    assert kept(top_p(logits, 0.85)) == [0, 1, 2]
    assert kept(top_p(logits, 0.3)) == [1]  # the top token always survives


def test_top_p_sums_in_float64_like_hugging_face():
    """Hugging Face's own unit case: with p = 0.8 the mass above the first 0.1 token is exactly 0.8, so only 0.5 and
    0.3 stay. A float32 running sum reaches 0.79999995 there and wrongly keeps a third token."""
    logits = torch.log(torch.tensor([[0.3, 0.1, 0.1, 0.5]]))
    assert kept(top_p(logits, 0.8)[0]) == [0, 3]
    sorted_probs = torch.softmax(logits, -1).sort(descending=True).values
    assert float((sorted_probs.cumsum(-1) - sorted_probs)[0, 2]) < 0.8  # the float32 sum that the fix avoids
    assert top_p(logits.half(), 0.8).dtype == torch.float16  # the result keeps the input's dtype


def test_min_p_scales_with_top_probability():
    logits = probs_logits(0.5, 0.3, 0.12, 0.08)
    assert kept(min_p(logits, 0.2)) == [0, 1, 2]  # threshold 0.1
    assert kept(min_p(logits, 1.0)) == [0]


def test_repetition_penalty_divides_positive_and_multiplies_negative_once():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    out = repetition_penalty(logits, torch.tensor([[0, 1, 1, 0]]), 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -2.0, 0.5, 3.0]]))
    assert torch.equal(repetition_penalty(torch.tensor([2.0, 1.0]), [0], 4.0), torch.tensor([0.5, 1.0]))


def test_pipeline_order_matches_manual_composition():
    gen = torch.Generator().manual_seed(3)
    logits, previous = torch.randn(4, 200, generator=gen), torch.randint(0, 200, (4, 7), generator=gen)
    config = SamplingConfig(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, repetition_penalty=1.3)
    manual = min_p(top_p(top_k(temperature(repetition_penalty(logits, previous, 1.3), 0.7), 50), 0.9), 0.05)
    assert torch.equal(warp_logits(logits, config, previous), manual)
    greedy = warp_logits(logits, SamplingConfig(temperature=0))
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1)) and (~torch.isinf(greedy)).sum() == 4


@pytest.mark.parametrize("config", [SamplingConfig(top_k=4), SamplingConfig(top_p=0.7), SamplingConfig(min_p=0.3),
                                    SamplingConfig(temperature=0.5, top_k=6, top_p=0.95)])
def test_draws_follow_renormalised_probabilities(config):
    base = torch.tensor([2.0, 1.5, 1.2, 1.0, 0.7, 0.2, 0.0, -0.5, -1.0, -3.0])
    n = 20_000
    draws = sample_next(base.expand(n, -1), config, torch.Generator().manual_seed(0))
    warped = warp_logits(base, config)
    expected = torch.softmax(warped, -1)
    counts = torch.bincount(draws, minlength=base.numel()).float()
    removed = torch.isinf(warped)
    assert removed.any() and counts[removed].sum() == 0
    sd = (n * expected * (1 - expected)).sqrt()
    assert ((counts - n * expected).abs() <= 4.5 * sd + 1)[~removed].all()


def test_same_generator_seed_same_draws():
    logits = torch.randn(8, 300, generator=torch.Generator().manual_seed(0))
    a = sample_next(logits, SamplingConfig(top_p=0.9), torch.Generator().manual_seed(5))
    b = sample_next(logits, SamplingConfig(top_p=0.9), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("call, allowed", [
    (lambda x: temperature(x, 0), "> 0"), (lambda x: temperature(x, -1.0), "> 0"),
    (lambda x: top_k(x, -1), ">= 0"),
    (lambda x: top_p(x, 0.0), r"\(0, 1\]"), (lambda x: top_p(x, 1.5), r"\(0, 1\]"),
    (lambda x: min_p(x, -0.1), r"\[0, 1\]"), (lambda x: min_p(x, 1.1), r"\[0, 1\]"),
    (lambda x: repetition_penalty(x, [0], 0.0), "> 0"), (lambda x: repetition_penalty(x, [99], 1.2), r"\[0, 9\]"),
    (lambda x: SamplingConfig(temperature=-0.5), ">= 0"), (lambda x: SamplingConfig(top_k=-3), ">= 0"),
    (lambda x: SamplingConfig(top_p=0), r"\(0, 1\]"), (lambda x: SamplingConfig(min_p=2), r"\[0, 1\]"),
    (lambda x: SamplingConfig(repetition_penalty=0), "> 0"),
    (lambda x: warp_logits(x, SamplingConfig(repetition_penalty=1.2)), "previous_ids"),
])
def test_invalid_arguments_raise_value_error_naming_the_range(call, allowed):
    with pytest.raises(ValueError, match=allowed):
        call(torch.zeros(10))


@pytest.mark.parametrize("call, allowed", [
    (lambda x: top_k(x, 2.5), r"integer >= 0.*got 2\.5"),
    (lambda x: top_k(torch.arange(5), 2), "floating-point"),
    (lambda x: temperature(x, True), "number > 0.*got True"),
    (lambda x: SamplingConfig(top_p="0.9"), r"number in \(0, 1\].*got '0\.9'"),
    (lambda x: repetition_penalty(x, [[0.5]], 1.2), r"previous_ids\[0\]\[0\].*integer token ids.*got 0\.5"),
    (lambda x: sample_next(x, {"temperature": 0}), "SamplingConfig"),
])
def test_wrong_types_raise_type_error_naming_what_is_allowed(call, allowed):
    with pytest.raises(TypeError, match=allowed):
        call(torch.zeros(10))


@pytest.mark.parametrize("value", [np.float32(0.7), np.float64(0.7), torch.tensor(0.7), torch.tensor(0.7).double()])
def test_real_number_types_are_accepted_as_plain_floats(value):
    config = SamplingConfig(temperature=value, top_p=value)
    assert type(config.temperature) is float and abs(config.temperature - 0.7) < 1e-6
    logits = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(temperature(logits, value), logits / 0.7)


@pytest.mark.parametrize("row", [[float("nan"), 1.0, 0.0], [float("-inf")] * 3, [float("inf"), 0.0, 0.0]])
def test_sample_next_refuses_rows_without_a_choosable_token(row):
    logits = torch.tensor([[0.0, 1.0, 2.0], row])
    for config in (SamplingConfig(temperature=0), SamplingConfig()):
        with pytest.raises(ValueError, match=r"row\(s\) \[1\] hold NaN"):
            sample_next(logits, config)


def test_same_result_as_hugging_face_warpers():
    """Reference check against transformers' own warpers (skipped without transformers, except in CI)."""
    hf = import_reference("transformers.generation.logits_process")
    gen = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(4, 300, generator=gen) * 3, torch.randint(-3, 4, (2, 300), generator=gen).float()])
    previous = torch.randint(0, 300, (6, 12), generator=gen)
    cases = [
        (top_k(logits, 7), hf.TopKLogitsWarper(7)),
        (min_p(logits, 0.15), hf.MinPLogitsWarper(0.15)), (temperature(logits, 0.6), hf.TemperatureLogitsWarper(0.6)),
        (repetition_penalty(logits, previous, 1.4), hf.RepetitionPenaltyLogitsProcessor(1.4)),
    ]
    for ours, warper in cases:
        theirs = warper(previous, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), type(warper).__name__
        assert torch.allclose(ours[~torch.isinf(ours)], theirs[~torch.isinf(theirs)]), type(warper).__name__
    # top-p on rows without ties (with exact ties at the cut, which tied tokens survive depends on the sort order)
    distinct = logits[:4]
    for p in [0.3, 0.8, 0.95]:
        assert torch.equal(top_p(distinct, p), hf.TopPLogitsWarper(p)(previous[:4], distinct.clone()))
