"""Measures of generated text: repetition loops, distinct-n, self-BLEU, perplexity, entropy and tail mass."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from .validation import check_choice, check_int, check_token_ids


def _check_generations(generations: Sequence[Sequence[int]]) -> None:
    if isinstance(generations, (str, torch.Tensor)) or not isinstance(generations, Sequence):
        raise TypeError(f"generations must be a list of token-id lists, got {type(generations).__name__}")
    if not generations:
        raise ValueError("generations must hold at least one token-id list, got an empty list")
    if not all(isinstance(g, Sequence) and not isinstance(g, str) for g in generations):
        raise TypeError("each generation must be a list of token ids")


def _check_positive_int(name: str, value: int) -> None:
    check_int(name, value, minimum=1)


def _repeats_at_end(tokens: list[int], n: int) -> int:
    """How many times the last ``n`` tokens occur back to back at the very end (1 = no repeat)."""
    phrase = tokens[len(tokens) - n:]
    count = 1
    while (count + 1) * n <= len(tokens) and tokens[len(tokens) - (count + 1) * n:len(tokens) - count * n] == phrase:
        count += 1
    return count


def ends_in_loop(tokens: Sequence[int], min_phrase: int = 3, max_phrase: int = 90, min_repeats: int = 2,
                 eos_id: int | None = None) -> bool:
    """True when the text ends in a repeated phrase: the repetition measure of Holtzman et al. (2020), "The Curious
    Case of Neural Text Degeneration", as in the script released with the paper (``metrics/repetition.py``).

    A trailing ``eos_id`` is dropped first (a loop that the model closed with EOS still counts). For each phrase
    length n = 1 .. ``max_phrase`` we count how often the last n tokens occur back to back at the end; the phrase
    length with the most repeats wins (the shortest on ties). The text is repetitive when that phrase occurs at least
    ``min_repeats`` times and is ``min_phrase`` (3) to ``max_phrase`` (90) tokens long, or when a shorter phrase (one
    or two tokens, e.g. a run of newlines) occurs more than 50 times.
    """
    for name, value in (("min_phrase", min_phrase), ("max_phrase", max_phrase), ("min_repeats", min_repeats)):
        _check_positive_int(name, value)
    if min_phrase > max_phrase:
        raise ValueError(f"min_phrase must be <= max_phrase, got {min_phrase} > {max_phrase}")
    tokens = list(tokens)
    if eos_id is not None:
        check_int("eos_id", eos_id, minimum=0)
        if tokens and tokens[-1] == eos_id:
            tokens.pop()
    if not tokens:
        return False
    repeats = [_repeats_at_end(tokens, n) for n in range(1, min(max_phrase, len(tokens)) + 1)]
    best = max(range(len(repeats)), key=repeats.__getitem__)  # first maximum: the shortest phrase on ties
    length, count = best + 1, repeats[best]
    return count >= min_repeats and (length >= min_phrase or count > 50)


def repetition_share(generations: Sequence[Sequence[int]], **loop_options) -> float:
    """Fraction of generations (0..1) that end in a repeated phrase, as judged by ``ends_in_loop`` (Holtzman et al.'s
    measure); ``loop_options`` (e.g. ``eos_id``) are passed on to it."""
    _check_generations(generations)
    return sum(ends_in_loop(g, **loop_options) for g in generations) / len(generations)


def _ngrams(tokens: Sequence[int], n: int) -> list[tuple]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(generations: Sequence[Sequence[int]], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over the whole set (Li et al., 2016); 1 = no n-gram ever repeats.

    Returns 0.0 when no generation is long enough to hold an n-gram.
    """
    _check_generations(generations)
    _check_positive_int("n", n)
    grams = [g for tokens in generations for g in _ngrams(list(tokens), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: Sequence[int], references: Sequence[Sequence[int]], max_n: int = 4) -> float:
    """Sentence BLEU (Papineni et al., 2002) of one token list against several references.

    Clipped n-gram precisions for n = 1..max_n, geometric mean with equal weights, brevity penalty against the
    reference length closest to the hypothesis. Zero counts are smoothed to 0.1 (like NLTK's ``method1``, which the
    Texygen self-BLEU uses), so one missing 4-gram does not zero the score.
    """
    _check_positive_int("max_n", max_n)
    hypothesis = list(hypothesis)
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(_ngrams(hypothesis, n))
        total = sum(counts.values())
        if total == 0:
            return 0.0
        best_ref = Counter()
        for ref in references:
            best_ref |= Counter(_ngrams(list(ref), n))  # | keeps the max count per n-gram
        matches = sum(min(c, best_ref[g]) for g, c in counts.items())
        log_precision += math.log((matches or 0.1) / total) / max_n
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision)


def self_bleu(generations: Sequence[Sequence[int]], max_n: int = 4) -> float:
    """Mean BLEU of each generation against all the others (Zhu et al., 2018): high = the texts look alike."""
    _check_generations(generations)
    if len(generations) < 2:
        raise ValueError("self_bleu needs at least 2 generations")
    scores = [bleu(g, [o for j, o in enumerate(generations) if j != i], max_n) for i, g in enumerate(generations)]
    return sum(scores) / len(scores)


def perplexity_from_logprobs(logprobs: Sequence[Sequence[float]]) -> float:
    """exp(-mean log-probability) over every token of every row (rows weighted by their length)."""
    flat = [lp for row in logprobs for lp in row]
    if not flat:
        raise ValueError("perplexity needs at least one token's log-probability")
    return math.exp(-sum(flat) / len(flat))


@torch.inference_mode()
def token_logprobs(model, ids: Sequence[int], prefix_len: int = 1) -> list[float]:
    """log P(ids[t] | ids[:t]) for t = prefix_len .. len(ids) - 1, from one forward pass without a cache."""
    ids = check_token_ids("ids", ids)
    ids = ids.reshape(-1).tolist() if isinstance(ids, torch.Tensor) else ids
    check_int("prefix_len", prefix_len, minimum=1, maximum=len(ids) - 1, hint="tokens to condition on")
    ids = check_token_ids("ids", ids, model.config.vocab_size)
    tensor = torch.tensor([ids], device=model.device)
    logp = torch.log_softmax(model(tensor)[0, :-1].float(), dim=-1)
    picked = logp.gather(1, tensor[0, 1:, None])[:, 0]
    return picked[prefix_len - 1:].tolist()


def perplexity(model, ids: Sequence[int], prefix_len: int = 1) -> float:
    """Perplexity of ``ids[prefix_len:]`` given everything before it: exp of the mean negative log-likelihood."""
    return perplexity_from_logprobs([token_logprobs(model, ids, prefix_len)])


def sequence_logprob(step_logits: torch.Tensor, token_ids: Sequence[int] | torch.Tensor) -> float:
    """Chain rule: sum over t of log softmax(step_logits[t])[token_ids[t]]; ``step_logits`` has shape [T, vocab]."""
    if not isinstance(step_logits, torch.Tensor) or not step_logits.is_floating_point():
        raise TypeError(f"step_logits must be a floating-point tensor of shape [steps, vocab], "
                        f"got {type(step_logits).__name__}")
    if step_logits.dim() != 2:
        raise ValueError(f"step_logits must have shape [steps, vocab], got {tuple(step_logits.shape)}")
    ids = check_token_ids("token_ids", token_ids, step_logits.shape[-1])  # 3.7 is refused, never truncated to 3
    ids = torch.as_tensor(ids, dtype=torch.long, device=step_logits.device)
    if ids.shape != step_logits.shape[:1]:
        raise ValueError(f"token_ids must hold one id per step ({step_logits.shape[0]}), got shape {tuple(ids.shape)}")
    logp = torch.log_softmax(step_logits.float(), dim=-1)
    return float(logp.gather(1, ids[:, None]).sum())


def entropy(logits: torch.Tensor, unit: str = "nats") -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension, in ``unit`` "nats" (natural log) or "bits" (log base 2);
    tokens at -inf contribute 0. One bit = ln 2 = 0.693 nats."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor of shape [..., vocab], got {type(logits).__name__}")
    if logits.dim() == 0:
        raise ValueError("logits must have a vocabulary dimension, got a 0-d tensor")
    check_choice("unit", unit, ("nats", "bits"))
    logp = torch.log_softmax(logits.float(), dim=-1)
    nats = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)
    return nats / math.log(2) if unit == "bits" else nats


def tail_mass(logits: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Probability mass outside the ``k`` most likely tokens, for each k in ``ks``: shape ``[..., len(ks)]``."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor of shape [..., vocab], got {type(logits).__name__}")
    if logits.dim() == 0:
        raise ValueError("logits must have a vocabulary dimension, got a 0-d tensor")
    vocab = logits.shape[-1]
    if not ks:
        raise ValueError(f"ks must be a non-empty list of integers in [1, {vocab}], got {ks!r}")
    for k in ks:
        check_int("each of ks", k, minimum=1, maximum=vocab)
    sorted_probs = torch.sort(torch.softmax(logits.float(), dim=-1), dim=-1, descending=True).values
    head = torch.cumsum(sorted_probs, dim=-1)[..., [k - 1 for k in ks]]
    return (1 - head).clamp(min=0)
