"""The exercise checks of lessons 01-02 accept correct answers and catch the typical mistakes."""
import torch

from course_utils.exercises import check_exercise
from course_utils.metrics import entropy, sequence_logprob, tail_mass
from course_utils.sampling import min_p, top_k, top_p

INF = float("-inf")


def tied_logits_and_k(g):
    return torch.randint(-4, 5, (30,), generator=g).float(), int(torch.randint(1, 30, (1,), generator=g))


def logits_and_fraction(g):
    return torch.randn(40, generator=g) * 2, float(torch.rand(1, generator=g) * 0.9 + 0.05)


def steps_and_ids(g):
    steps = int(torch.randint(1, 8, (1,), generator=g))
    return torch.randn(steps, 30, generator=g) * 3, torch.randint(0, 30, (steps,), generator=g)


def top_k_without_ties(logits, k):
    out = torch.full_like(logits, INF)
    index = logits.topk(k).indices
    out[index] = logits[index]
    return out


def top_p_dropping_the_crossing_token(logits, p):
    sorted_probs, order = torch.softmax(logits, -1).sort(descending=True)
    remove = torch.zeros_like(sorted_probs, dtype=torch.bool)
    remove[order] = sorted_probs.cumsum(-1) > p
    remove[order[0]] = False
    return logits.masked_fill(remove, INF)


def min_p_with_absolute_threshold(logits, p):
    return logits.masked_fill(torch.softmax(logits, -1) < p, INF)


def logprob_off_by_one(step_logits, ids):
    logp = torch.log_softmax(step_logits, -1)
    return float(logp[torch.arange(len(ids)), ids.roll(1)].sum())


def test_correct_answers_pass(capsys):
    assert check_exercise("top-k", lambda x, k: top_k(x.clone(), k), top_k, tied_logits_and_k)
    assert check_exercise("entropy", lambda x: float(entropy(x)), lambda x: float(entropy(x)),
                          lambda g: (torch.randn(50, generator=g),), atol=1e-4)
    assert "PASS" in capsys.readouterr().out


def test_typical_mistakes_fail_with_a_hint(capsys):
    assert not check_exercise("top-k", top_k_without_ties, top_k, tied_logits_and_k, hint="keep ties")
    assert not check_exercise("top-p", top_p_dropping_the_crossing_token, top_p, logits_and_fraction)
    assert not check_exercise("min-p", min_p_with_absolute_threshold, min_p, logits_and_fraction)
    assert not check_exercise("log-prob", logprob_off_by_one, sequence_logprob, steps_and_ids, atol=1e-4)
    assert not check_exercise("tail", lambda x, k: float(tail_mass(x, [k])[0]) + 0.01,
                              lambda x, k: float(tail_mass(x, [k])[0]),
                              lambda g: (torch.randn(100, generator=g), 10))
    out = capsys.readouterr().out
    assert out.count("FAIL") == 5 and "hint: keep ties" in out


def test_unattempted_exercise_is_reported_not_raised(capsys):
    def stub(logits, k):
        raise NotImplementedError

    assert not check_exercise("top-k", stub, top_k, tied_logits_and_k)
    assert "not attempted yet" in capsys.readouterr().out


def test_prediction_check_accepts_right_answers_and_rejects_wrong_ones(capsys):
    from course_utils.exercises import check_prediction

    assert check_prediction("bucket", 10, 10) and check_prediction("buckets", [8, 10, 13], [8, 10, 13])
    assert check_prediction("best", "ntk", "ntk") and check_prediction("slope", 0.52, 0.5, tolerance=0.05)
    assert check_prediction("count", 12.0, 12)  # an integer written as a float is the same answer
    assert not check_prediction("bucket", 9, 10) and not check_prediction("buckets", [8, 10], [8, 10, 13])
    assert not check_prediction("best", "linear", "ntk") and not check_prediction("slope", 0.6, 0.5, tolerance=0.05)
    assert not check_prediction("bucket", None, 10)
    assert check_prediction("tie", "ntk", {"none", "ntk"}) and not check_prediction("tie", "linear", {"none", "ntk"})
    out = capsys.readouterr().out
    assert out.count("PASS") == 6 and out.count("FAIL") == 5 and "not answered yet" in out


def test_prediction_check_refuses_a_negative_tolerance():
    import pytest

    from course_utils.exercises import check_prediction

    with pytest.raises(ValueError, match="tolerance"):
        check_prediction("x", 1, 1, tolerance=-1)


def test_lesson_01_predictions_reject_wrong_answers(capsys):
    """The three predictions of lesson 01, checked as the notebook checks them."""
    import math

    from course_utils.exercises import check_prediction
    from course_utils.metrics import repetition_share

    uniform_bits = float(entropy(torch.zeros(49_152), unit="bits"))
    assert check_prediction("uniform entropy", 15.58, uniform_bits, tolerance=0.05)
    assert check_prediction("uniform entropy", math.log2(49_152), uniform_bits, tolerance=0.05)
    assert not check_prediction("uniform entropy", math.log(49_152), uniform_bits, tolerance=0.05)  # nats, not bits
    assert not check_prediction("uniform entropy", 16, uniform_bits, tolerance=0.05)  # log2 rounded up
    # three repeats: a loop caught after two copies no longer counts, so "fewer"; "more" is never right
    texts = [[1, 2] + [5, 6, 7] * 2, [1] + [8, 9, 10] * 3, list(range(20))]
    twice, three = repetition_share(texts), repetition_share(texts, min_repeats=3)
    measured = {"fewer" if three < twice else "the same"}
    assert measured == {"fewer"}
    assert check_prediction("three repeats", "fewer", measured)
    assert not check_prediction("three repeats", "more", measured)
    assert not check_prediction("three repeats", "the same", measured)
    assert check_prediction("top-1 share", 0.5, 0.62, tolerance=0.15)
    assert not check_prediction("top-1 share", 0.9, 0.62, tolerance=0.15)
    capsys.readouterr()


def test_lesson_02_predictions_reject_wrong_answers(capsys):
    from course_utils.exercises import check_prediction
    from course_utils.sampling import temperature

    def size_bucket(n):
        return "1" if n == 1 else "2-9" if n < 10 else "10-99" if n < 100 else "100-999" if n < 1000 else "1000 or more"

    logits = torch.tensor([6.0, 2.0, 1.5, 1.0] + [0.0] * 96)   # one sure token, then a flat tail
    nucleus = {t: int((~top_p(temperature(logits, t), 0.9).isinf()).sum()) for t in (0.5, 1.5)}
    assert nucleus[0.5] == 1 and nucleus[1.5] > 1  # a hotter softmax needs more tokens for the same mass
    assert check_prediction("T = 0.5", "1", {size_bucket(nucleus[0.5])})
    assert not check_prediction("T = 1.5", "1", {size_bucket(nucleus[1.5])})
    assert not check_prediction("T = 1.5", "2-9", {"10-99"})
    assert check_prediction("outside the top 100", 0.45, 0.5, tolerance=0.1)
    assert not check_prediction("outside the top 100", 0.1, 0.5, tolerance=0.1)
    capsys.readouterr()


def test_top_p_exercise_catches_a_float32_sum():
    """The lesson's check includes Hugging Face's exact case, which a float32 running sum gets wrong."""
    def top_p_in_float32(logits, p):
        sorted_probs, order = torch.softmax(logits.float(), -1).sort(descending=True)
        remove_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= p
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        return logits.masked_fill(remove, INF)

    def hf_case(g):
        return torch.log(torch.tensor([0.3, 0.1, 0.1, 0.5])), 0.8

    assert not check_exercise("top-p", top_p_in_float32, top_p, hf_case, trials=1)


# ------------------------------------------------------------------- lessons 03 and 04 (issue 14): wrong answers fail
def test_lesson04_calibration_exercise_rejects_common_mistakes(capsys):
    from course_utils.option_scoring import calibrate_scores

    def inputs(g):
        return 4 * torch.randn(3, 4, generator=g), 4 * torch.randn(2, 4, generator=g)

    def no_renormalisation(scores, free):  # subtracts the prior from the raw sums
        return (scores - torch.softmax(free, -1).mean(0).log()).float()

    def averaged_log_probs(scores, free):  # averages log-probabilities instead of probabilities
        return (torch.log_softmax(scores, -1) - torch.log_softmax(free, -1).mean(0)).float()

    def right(scores, free):
        return (torch.log_softmax(scores.double(), -1) - torch.softmax(free.double(), -1).mean(0).log()).float()

    assert not check_exercise("calibrate", no_renormalisation, calibrate_scores, inputs, atol=1e-4)
    assert not check_exercise("calibrate", averaged_log_probs, calibrate_scores, inputs, atol=1e-4)
    assert check_exercise("calibrate", right, calibrate_scores, inputs, atol=1e-4)
    out = capsys.readouterr().out
    assert out.count("FAIL") == 2 and out.count("PASS") == 1


def test_lesson03_order_exercise_accepts_only_the_measured_set(capsys):
    from course_utils.exercises import check_prediction
    from course_utils.sampling import min_p, temperature, top_k, top_p

    fresh = 3 * torch.randn(500, generator=torch.Generator().manual_seed(1))
    rules = {"top-k": lambda z: top_k(z, 20), "top-p": lambda z: top_p(z, 0.8), "min-p": lambda z: min_p(z, 0.05)}
    measured = sorted(name for name, rule in rules.items()
                      if not torch.equal(torch.isfinite(rule(temperature(fresh, 2.0))),
                                         torch.isfinite(temperature(rule(fresh), 2.0))))
    assert measured == ["min-p", "top-p"]  # the lesson's answer: rules that read probabilities, not ranks
    for wrong in ([], ["top-k"], ["top-p"], ["min-p"], ["min-p", "top-k", "top-p"], ["top-p", "min-p"]):
        assert not check_prediction("order", wrong, measured)
    assert check_prediction("order", ["min-p", "top-p"], measured)
    assert capsys.readouterr().out.count("FAIL") == 6


def test_lesson03_nucleus_and_lesson04_accuracy_predictions_use_their_tolerance(capsys):
    from course_utils.exercises import check_prediction

    # lesson 04: accuracies are fractions checked within +-0.1 (capitalised labels) or +-0.2 (dates prompt)
    assert check_prediction("raw", 0.3, 0.25, tolerance=0.1) and not check_prediction("raw", 0.5, 0.25, tolerance=0.1)
    assert not check_prediction("dates above 0 %", True, False)
    # lesson 03: each nucleus size within a factor of two of the measured one
    measured = (1, 3019)
    for guess, ok in (((1, 2000), True), ((1, 6000), True), ((3, 2000), False), ((1, 100), False)):
        assert all(m / 2 <= p <= 2 * m for p, m in zip(guess, measured)) is ok
    capsys.readouterr()


def test_lesson08_prediction_checks_reject_wrong_answers(capsys):
    """Lesson 08: batch-32 memory within 10 % of the measurement; the α rule from a set of tied rules."""
    from course_utils.exercises import check_prediction

    measured = 187.5  # MiB saved at batch 32, say; the lesson accepts 10 % either way
    assert check_prediction("batch 32", 4 * 47.0, measured, tolerance=0.1 * measured)
    assert not check_prediction("batch 32", 47.0, measured, tolerance=0.1 * measured)   # forgot to scale the batch
    assert not check_prediction("batch 32", 16 * 47.0, measured, tolerance=0.1 * measured)  # scaled it twice
    tied = {"α=2r", "rsLoRA"}
    assert check_prediction("rule", "rsLoRA", tied) and not check_prediction("rule", "fixed α=16", tied)
    assert not check_prediction("rule", "alpha=2r", tied)  # a spelling the check does not know is not accepted
    out = capsys.readouterr().out
    assert out.count("PASS") == 2 and out.count("FAIL") == 4
