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
