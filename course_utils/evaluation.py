"""Measuring a prompting strategy by generation: accuracy and its interval, self-consistency votes, confusion counts."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import torch

from .answers import answer_line_complete, extract_answer, is_correct
from .generation import generate
from .prefix_cache import prefix_for
from .prompt_tasks import Item, Task
from .prompts import build_prompt
from .streaming import settled_stopper
from .validation import check_bool, check_int, check_real


def accuracy_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for an accuracy of ``hits`` out of ``n`` (95 % for z = 1.96).

    With a few dozen items an accuracy is a rough estimate; this interval says how rough. Unlike p +- z * se, it stays
    inside [0, 1] and is not empty at 0 or n hits (Wilson, 1927).
    """
    check_int("n", n, minimum=1)
    check_int("hits", hits, minimum=0, maximum=n)
    z = check_real("z", z, low=0, low_open=True)
    p, z2 = hits / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * (p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvalResult:
    """Accuracy, mean number of generated tokens and wall time of one strategy on one task."""

    task: str
    strategy: str
    accuracy: float
    mean_tokens: float
    seconds: float
    outputs: list[str] = field(repr=False)
    predictions: list[str | None] = field(repr=False)
    correct: list[bool] = field(repr=False)
    finished: list[bool] = field(repr=False)

    @property
    def cut_off(self) -> float:
        """Share of replies stopped by ``max_new_tokens`` before the end-of-turn token."""
        return 1 - sum(self.finished) / len(self.finished)

    @property
    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the accuracy (see ``accuracy_interval``)."""
        return accuracy_interval(sum(self.correct), len(self.correct))

    @property
    def n_finished(self) -> int:
        """How many replies ended (end-of-turn token or a complete answer line) before the token cap."""
        return sum(self.finished)

    @property
    def finished_accuracy(self) -> float | None:
        """Accuracy over the finished replies only (None when every reply was cut off)."""
        hits = [ok for ok, done in zip(self.correct, self.finished) if done]
        return sum(hits) / len(hits) if hits else None

    def row(self) -> dict:
        """A flat dict for a results table."""
        low, high = self.interval
        return {"task": self.task, "strategy": self.strategy, "accuracy": self.accuracy, "low": low, "high": high,
                "mean_tokens": self.mean_tokens, "seconds": self.seconds}


def evaluate(model, tokenizer, task: Task, strategy: str, items: list[Item] | None = None, k: int = 3,
             seed: int = 0, max_new_tokens: int = 16, batch_size: int = 8,
             instruction: str | None = None, stop_at_answer: bool = False, sampling=None,
             sample_seed: int | None = None) -> EvalResult:
    """Generate for every item with ``strategy`` (greedily unless ``sampling``), extract the answers, and score them.

    ``items`` defaults to the task's test items. ``mean_tokens`` counts the new tokens of each reply (the end-of-turn
    token included when it was reached); ``finished`` marks replies that reached it (or, with ``stop_at_answer``, a
    complete answer line: see ``answer_line_complete``); ``seconds`` is the wall time of generation alone. The
    prompts' shared prefix (system message, instruction, examples) is run once and reused by every row
    (``prefix_cache``); the replies are those of the plain path up to float rounding.
    ``sampling``/``sample_seed``: a ``SamplingConfig`` and the seed of its random stream (batch ``b`` uses
    ``sample_seed + b``).
    """
    items = list(task.items if items is None else items)
    if not items:
        raise ValueError("items must be a non-empty list (None = the task's test items)")
    check_int("batch_size", batch_size, minimum=1)
    check_bool("stop_at_answer", stop_at_answer)
    prompts = [build_prompt(task, strategy, item.question, k, seed, instruction).token_ids(tokenizer)
               for item in items]
    outputs, lengths, finished, seconds = [], [], [], 0.0
    began = time.perf_counter()
    prefix = prefix_for(model, prompts)  # system message, instruction and examples: run once for every batch
    seconds += time.perf_counter() - began
    for batch_index, start in enumerate(range(0, len(prompts), batch_size)):
        rows = prompts[start:start + batch_size]
        stopper = settled_stopper(tokenizer, len(rows), partial(answer_line_complete, task)) if stop_at_answer else None
        began = time.perf_counter()
        result = generate(model, rows, max_new_tokens=max_new_tokens, tokenizer=tokenizer, eos_id=tokenizer.eos_id,
                          sampling=sampling, seed=None if sample_seed is None else sample_seed + batch_index,
                          stream=stopper, prefix=prefix)
        seconds += time.perf_counter() - began
        outputs += result.texts
        lengths += [len(tokens) for tokens in result.tokens]
        finished += result.finished
    predictions = [extract_answer(task, text) for text in outputs]
    correct = [is_correct(task, p, item) for p, item in zip(predictions, items)]
    return EvalResult(task.name, strategy, sum(correct) / len(items), sum(lengths) / len(lengths), seconds,
                      outputs, predictions, correct, finished)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent answer that is not None (ties: the one seen first); None when there is none."""
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    return max(counts, key=counts.get) if counts else None


@dataclass
class VoteResult:
    """Self-consistency: ``n_votes`` sampled replies per item, the majority answer, and single-sample accuracy."""

    task: str
    votes: list[list[str | None]] = field(repr=False)   # per item, the answers read from its sampled replies
    majority: list[str | None] = field(repr=False)
    correct: list[bool] = field(repr=False)              # the majority answer is right
    sample_correct: list[list[bool]] = field(repr=False)  # each sampled reply on its own
    finished: float                                      # share of sampled replies that ended before the cap
    seconds: float

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct)

    @property
    def interval(self) -> tuple[float, float]:
        return accuracy_interval(sum(self.correct), len(self.correct))

    @property
    def single_accuracy(self) -> float:
        """Mean accuracy of one sampled reply (what voting is compared with)."""
        flat = [ok for row in self.sample_correct for ok in row]
        return sum(flat) / len(flat)


def self_consistency(model, tokenizer, task: Task, items: list[Item], n_votes: int, sampling, strategy: str =
                     "few-shot-cot", k: int = 3, seed: int = 0, max_new_tokens: int = 128, batch_size: int = 40,
                     sample_seed: int = 0) -> VoteResult:
    """Wang et al. 2022: sample ``n_votes`` chain-of-thought replies per item and keep the most frequent answer.

    Every item's prompt is repeated ``n_votes`` times in the batch; sampling uses ``sampling`` (a ``SamplingConfig``)
    and stops each reply once its answer line is complete.
    """
    n_votes = check_int("n_votes", n_votes, minimum=1)
    items = list(items)
    if not items:
        raise ValueError("items must be a non-empty list")
    if sampling is None:
        raise ValueError("self-consistency needs a SamplingConfig: greedy replies would all be the same")
    repeated = [item for item in items for _ in range(n_votes)]
    run = evaluate(model, tokenizer, task, strategy, repeated, k, seed, max_new_tokens, batch_size,
                   stop_at_answer=True, sampling=sampling, sample_seed=sample_seed)
    votes = [run.predictions[i * n_votes:(i + 1) * n_votes] for i in range(len(items))]
    sample_correct = [run.correct[i * n_votes:(i + 1) * n_votes] for i in range(len(items))]
    majority = [majority_vote(v) for v in votes]
    correct = [is_correct(task, m, item) for m, item in zip(majority, items)]
    return VoteResult(task.name, votes, majority, correct, sample_correct, run.n_finished / len(repeated),
                      run.seconds)


def confusion_matrix(gold: list[str], predicted: list[str | None], labels: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Counts[i, j]: items of true class ``labels[i]`` predicted as ``labels[j]`` (a last column for None/other)."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold and predicted must have the same length, got {len(gold)} and {len(predicted)}")
    index = {label: i for i, label in enumerate(labels)}
    counts = torch.zeros(len(labels), len(labels) + 1, dtype=torch.long)
    for g, p in zip(gold, predicted):
        if g not in index:
            raise ValueError(f"gold label {g!r} is not one of {tuple(labels)}")
        counts[index[g], index.get(p, len(labels))] += 1
    return counts
