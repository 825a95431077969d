"""Text metrics: loops, distinct-n, BLEU/self-BLEU, perplexity (cached generate == uncached scoring), entropy, tails."""
import math

import pytest
import torch

from course_utils import LlamaModel
from course_utils.decoding_io import NO_EOS
from course_utils.generation import generate
from course_utils.metrics import (
    bleu,
    distinct_n,
    ends_in_loop,
    entropy,
    perplexity,
    perplexity_from_logprobs,
    repetition_share,
    self_bleu,
    sequence_logprob,
    tail_mass,
    token_logprobs,
)


def test_loop_detection_follows_holtzman():
    # a phrase of 3 to 90 tokens said at least twice back to back at the very end
    assert ends_in_loop([1, 2, 3] + [7, 8, 9] * 6)
    assert ends_in_loop([1] + list(range(10, 13)) * 2)  # 3 tokens, twice: the shortest phrase that counts
    assert ends_in_loop([5] + list(range(100, 190)) * 2)  # 90 tokens, twice: the longest
    assert not ends_in_loop([5] + list(range(100, 191)) * 2)  # 91 tokens: too long to count
    assert not ends_in_loop([4, 5] + [6] * 50)  # a one-token run needs more than 50 repeats
    assert ends_in_loop([4, 5] + [6] * 51)
    assert not ends_in_loop([4, 5] + [6, 7] * 3)  # a two-token phrase is too short
    assert not ends_in_loop(list(range(40)))
    assert not ends_in_loop([7, 8, 9] * 5 + [1, 2])  # the loop is not at the end
    assert not ends_in_loop(list(range(10, 19)) * 3, min_repeats=4)
    assert not ends_in_loop([7, 8, 9] * 5 + [2])  # a token after the loop, unless it is EOS...
    assert ends_in_loop([7, 8, 9] * 5 + [2], eos_id=2)  # ... which is dropped first, as in the released script
    assert not ends_in_loop([])
    assert repetition_share([[1] * 60, list(range(20)), [3, 4, 5] * 10, [5]]) == 0.5


def test_grandfather_example_counts():
    """Lesson 01's greedy text ended in a 31-token sentence said twice, which the old 30-token limit missed."""
    sentence = list(range(1000, 1031))
    text = [11, 12, 13, 14] + sentence + sentence
    assert len(sentence) == 31 and ends_in_loop(text)
    assert ends_in_loop(text + [2], eos_id=2)
    assert not ends_in_loop(text + [17])  # a different token after it: the text moved on
    # a human-like text that reuses words and a short phrase but does not end in a repeat
    prose = [20, 21, 22, 23, 24, 20, 21, 25, 26, 27, 28, 22, 23, 29]
    assert not ends_in_loop(prose)


def test_distinct_n():
    assert distinct_n([[1, 2, 3, 4]], 2) == 1.0
    assert distinct_n([[1, 2, 1, 2, 1]], 2) == 0.5  # (1,2),(2,1),(1,2),(2,1)
    assert distinct_n([[1, 2], [1, 2]], 1) == 0.5
    assert distinct_n([[1]], 3) == 0.0


def test_bleu_and_self_bleu():
    text = list(range(10))
    assert bleu(text, [text]) == pytest.approx(1.0)
    smoothed = math.exp(sum(math.log(0.1 / count) for count in (10, 9, 8, 7)) / 4)  # no n-gram matches at all
    assert bleu(text, [list(range(100, 110))]) == pytest.approx(smoothed)
    assert bleu(text[:5], [text]) == pytest.approx(math.exp(1 - 10 / 5))  # brevity penalty only
    assert self_bleu([text, text, text]) == pytest.approx(1.0)
    assert self_bleu([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]]) < 0.15


def test_perplexity_from_generate_matches_uncached_scoring(tiny_config):
    torch.manual_seed(0)
    tiny_config.tie_embeddings = False
    model = LlamaModel(tiny_config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.4)
    prompt = [5, 17, 42, 8]
    result = generate(model, [prompt], max_new_tokens=10, eos_id=NO_EOS)
    full = prompt + result.tokens[0]
    assert token_logprobs(model, full, len(prompt)) == pytest.approx(result.logprobs[0], abs=1e-4)
    assert perplexity(model, full, len(prompt)) == pytest.approx(perplexity_from_logprobs(result.logprobs), rel=1e-4)
    step_logits = model(torch.tensor([full]))[0, len(prompt) - 1:-1].detach()
    assert sequence_logprob(step_logits, result.tokens[0]) == pytest.approx(result.total_logprobs[0], abs=1e-3)


def test_perplexity_of_uniform_model_is_vocab_size():
    assert perplexity_from_logprobs([[math.log(1 / 50)] * 7]) == pytest.approx(50)


def test_entropy_and_tail_mass():
    assert float(entropy(torch.zeros(64))) == pytest.approx(math.log(64))
    assert float(entropy(torch.zeros(64), unit="bits")) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="unit"):
        entropy(torch.zeros(4), unit="bans")
    assert float(entropy(torch.tensor([0.0, float("-inf"), float("-inf")]))) == 0.0
    logits = torch.tensor([0.5, 0.25, 0.125, 0.125]).log()
    assert tail_mass(logits, [1, 2, 4]).tolist() == pytest.approx([0.5, 0.25, 0.0])


@pytest.mark.parametrize("call, message", [
    (lambda: ends_in_loop([1], max_phrase=0), ">= 1"), (lambda: distinct_n([[1, 2]], 0), ">= 1"),
    (lambda: distinct_n([], 2), "at least one token-id list"), (lambda: self_bleu([[1, 2]]), "at least 2"),
    (lambda: tail_mass(torch.zeros(5), [6]), r"\[1, 5\]"), (lambda: perplexity_from_logprobs([[]]), "at least one"),
    (lambda: sequence_logprob(torch.zeros(3, 5), [1, 2]), "one id per step"),
    (lambda: token_logprobs(None, [1, 2], 2), r"\[1, 1\]"),
])
def test_invalid_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: sequence_logprob(torch.zeros(2, 5), [1, 3.7]), r"token_ids\[1\] .*integer token ids in \[0, 4\].*3\.7"),
    (lambda: sequence_logprob(torch.zeros(2, 5, dtype=torch.long), [1, 3]), "floating-point tensor"),
    (lambda: entropy([0.1, 0.9]), "got list"), (lambda: distinct_n([[1, 2]], 1.5), r"n must be an integer >= 1"),
    (lambda: distinct_n("abc", 1), "list of token-id lists, got str"),
])
def test_wrong_types_raise_type_error(call, message):
    with pytest.raises(TypeError, match=message):
        call()
