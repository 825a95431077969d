"""Prompting, measured: labelled tasks, prompt builders, answer extraction, option scoring and an evaluation loop.

Every prompt is a list of chat messages rendered with the model's own chat template, plus an optional ``prefill``:
text placed at the start of the assistant's turn (zero-shot chain-of-thought puts "Let's think step by step." there,
as Kojima et al. 2022 put it after "A:"). Strategies:

- ``zero-shot``: the task statement and the question in one user message.
- ``few-shot``: ``k`` solved examples as earlier user/assistant turns, chosen and ordered by a seed.
- ``expert``: zero-shot plus an identity in the system message.
- ``few-shot-cot``: few-shot with worked reasoning in the example answers (Wei et al. 2022).
- ``zero-shot-cot``: zero-shot with the assistant turn opened by "Let's think step by step." (Kojima et al. 2022).
"""
from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .datasets import read_jsonl_records
from .generation import generate
from .paths import data_dir
from .validation import check_bool, check_int, check_real

STRATEGIES = ("zero-shot", "few-shot", "expert", "few-shot-cot", "zero-shot-cot")
COT_STRATEGIES = ("few-shot-cot", "zero-shot-cot")
ANSWER_TYPES = ("option", "number", "pattern")
ZERO_SHOT_COT_TRIGGER = "Let's think step by step."
ANSWER_MARKER = "The answer is"
_MARKER_RE = re.compile(r"answer is\s*:?", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Item:
    """One labelled question; ``reasoning`` (worked steps, without the final answer) is used by few-shot CoT."""

    question: str
    answer: str
    reasoning: str | None = None


@dataclass(frozen=True)
class Task:
    """A labelled task: how to ask it, how to read answers, a pool of solved examples and the test items.

    ``answer_format`` is the sentence that asks for a bare answer (used by the direct strategies only);
    ``answer_type`` says how answers are extracted: ``option`` (one of ``options``), ``number`` or ``pattern``
    (the first match of the regular expression ``answer_pattern``).
    """

    name: str
    instruction: str
    answer_format: str
    expert: str
    answer_type: str
    examples: tuple[Item, ...]
    items: tuple[Item, ...]
    options: tuple[str, ...] = ()
    answer_pattern: str | None = None


@dataclass(frozen=True)
class Prompt:
    """Chat messages plus text that opens the assistant's reply (``prefill``, often empty)."""

    messages: tuple[dict, ...]
    prefill: str = ""

    def render(self, tokenizer) -> str:
        """The prompt as text: the rendered chat template followed by the prefill."""
        return tokenizer.render_chat(list(self.messages), add_generation_prompt=True) + self.prefill

    def token_ids(self, tokenizer) -> list[int]:
        """Token ids of the chat template (ending with the assistant header) followed by the prefill's ids."""
        ids = tokenizer.apply_chat_template(list(self.messages), add_generation_prompt=True)
        return ids + (tokenizer.encode(self.prefill) if self.prefill else [])


# ----------------------------------------------------------------------------------------------- loading tasks
_TASK_FIX = "fix that line, or restore the course's copy with `git checkout data/prompting`"
_HEADER_KEYS = {"task", "instruction", "answer_format", "expert", "answer_type"}


def load_task(path: str | os.PathLike) -> Task:
    """Read a task from JSONL: line 1 is the header, every further line one item.

    Header keys: ``task``, ``instruction``, ``answer_format``, ``expert``, ``answer_type`` (+ ``options`` for
    ``option`` tasks, ``answer_pattern`` for ``pattern`` tasks). Item keys: ``split`` ("example" or "test"),
    ``question``, ``answer`` and, for examples, ``reasoning``. Errors name the file and the line.
    """
    path = Path(path)
    records = read_jsonl_records(path, _TASK_FIX)
    if not records:
        raise ValueError(f"{path}: the task file is empty; line 1 must be a header with keys {sorted(_HEADER_KEYS)}")
    header = _check_header(path, *records[0])
    examples, items, first_line = [], [], {}
    for number, record in records[1:]:
        item, split = _parse_item(path, number, record, header)
        if item.question in first_line:  # a repeated question would count twice or leak an example into the test
            raise ValueError(f"{path}, line {number}: the question {item.question!r} already appears on line "
                             f"{first_line[item.question]}; remove one of them")
        first_line[item.question] = number
        (examples if split == "example" else items).append(item)
    if not items:
        raise ValueError(f"{path}: no test items (lines with \"split\": \"test\")")
    return Task(name=header["task"], instruction=header["instruction"], answer_format=header["answer_format"],
                expert=header["expert"], answer_type=header["answer_type"], examples=tuple(examples),
                items=tuple(items), options=tuple(header.get("options", ())),
                answer_pattern=header.get("answer_pattern"))


def _check_header(path: Path, number: int, header: dict) -> dict:
    missing = _HEADER_KEYS - header.keys()
    if missing:
        raise ValueError(f"{path}, line {number}: the header lacks {sorted(missing)}")
    kind = header["answer_type"]
    if kind not in ANSWER_TYPES:
        raise ValueError(f"{path}, line {number}: answer_type must be one of {ANSWER_TYPES}, got {kind!r}")
    if kind == "option" and len(header.get("options", ())) < 2:
        raise ValueError(f"{path}, line {number}: an option task needs a list of at least 2 options")
    if kind == "pattern":
        try:
            re.compile(header.get("answer_pattern") or "")
        except re.error as error:
            raise ValueError(f"{path}, line {number}: answer_pattern is not a valid regex ({error})") from None
        if not header.get("answer_pattern"):
            raise ValueError(f"{path}, line {number}: a pattern task needs answer_pattern")
    return header


def _parse_item(path: Path, number: int, record: dict, header: dict) -> tuple[Item, str]:
    split = record.get("split")
    if split not in ("example", "test"):
        raise ValueError(f"{path}, line {number}: split must be 'example' or 'test', got {split!r}")
    for key in ("question", "answer") + (("reasoning",) if split == "example" else ()):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"{path}, line {number}: {key!r} must be a non-empty string")
    if header["answer_type"] == "option" and record["answer"] not in header["options"]:
        raise ValueError(f"{path}, line {number}: answer {record['answer']!r} is not one of {header['options']}")
    return Item(record["question"], record["answer"], record.get("reasoning")), split


def load_tasks(folder: str | os.PathLike | None = None) -> dict[str, Task]:
    """Every ``*.jsonl`` task in ``folder`` (default: the course's ``data/prompting``), by task name."""
    folder = data_dir() / "prompting" if folder is None else folder
    if not Path(folder).is_dir():
        raise ValueError(f"{folder} is not a folder; pass the folder that holds the *.jsonl task files")
    paths = sorted(Path(folder).glob("*.jsonl"))
    if not paths:
        raise ValueError(f"no *.jsonl task files in {folder}")
    tasks, source = {}, {}
    for path in paths:
        task = load_task(path)
        if task.name in tasks:
            raise ValueError(f"{path} and {source[task.name]} both define task {task.name!r}; "
                             f"rename the task in one header or remove the copy")
        tasks[task.name], source[task.name] = task, path
    return tasks


# --------------------------------------------------------------------------------------------- prompt builders
def select_examples(pool: tuple[Item, ...] | list[Item], k: int, seed: int) -> list[Item]:
    """``k`` distinct examples from ``pool``, chosen AND ordered by ``seed`` (same seed, same list)."""
    check_int("k", k, minimum=0, maximum=len(pool), hint="the pool size")
    check_int("seed", seed)
    return random.Random(seed).sample(list(pool), k)


def user_message(instruction: str, question: str) -> dict:
    """The user turn: the task statement, a blank line, the question."""
    return {"role": "user", "content": f"{instruction}\n\n{question}"}


def direct_instruction(task: Task) -> str:
    """Task statement plus the request for a bare answer, as used by the direct strategies."""
    return f"{task.instruction} {task.answer_format}"


def cot_answer(item: Item) -> str:
    """An example's chain-of-thought reply: its reasoning, then "The answer is X."."""
    if not item.reasoning:
        raise ValueError(f"example {item.question!r} has no reasoning; few-shot CoT needs worked examples")
    return f"{item.reasoning} {ANSWER_MARKER} {item.answer}."


def build_prompt(task: Task, strategy: str, question: str, k: int = 3, seed: int = 0,
                 instruction: str | None = None) -> Prompt:
    """The prompt of ``strategy`` (one of ``STRATEGIES``) for ``question``.

    ``k`` and ``seed`` pick the examples of the few-shot strategies; ``instruction`` replaces the task's own
    wording (for the direct strategies it replaces statement + answer format together).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    if not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    cot = strategy in COT_STRATEGIES
    wording = instruction if instruction is not None else (task.instruction if cot else direct_instruction(task))
    messages: list[dict] = []
    if strategy == "expert":
        messages.append({"role": "system", "content": task.expert})
    if strategy in ("few-shot", "few-shot-cot"):
        for example in select_examples(task.examples, k, seed):
            messages.append(user_message(wording, example.question))
            reply = cot_answer(example) if cot else example.answer
            messages.append({"role": "assistant", "content": reply})
    messages.append(user_message(wording, question))
    prefill = ZERO_SHOT_COT_TRIGGER if strategy == "zero-shot-cot" else ""
    return Prompt(tuple(messages), prefill)


# ------------------------------------------------------------------------------------------- answer extraction
def _answer_region(text: str) -> str:
    """The text after the last "answer is" when the reply has one, else the whole reply."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    markers = list(_MARKER_RE.finditer(text))
    return text[markers[-1].end():] if markers else text


def canonical_number(text: str) -> str:
    """"1,200" -> "1200", "6.0" -> "6", "-3.50" -> "-3.5": one spelling per value."""
    value = text.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return "0" if value in ("-0", "") else value


def extract_number(text: str) -> str | None:
    """The answer number of a reply: the first number after the last "answer is", else the LAST number.

    Returns its canonical spelling (see ``canonical_number``) or None when the reply holds no number.
    """
    region = _answer_region(text)
    numbers = _NUMBER_RE.findall(region)
    if not numbers:
        return None
    chosen = numbers[0] if region is not text else numbers[-1]
    return canonical_number(chosen.rstrip(","))


def extract_option(text: str, options: tuple[str, ...] | list[str]) -> str | None:
    """The option named first (case-insensitive, at a word start) after the last "answer is", else in the reply."""
    if not options:
        raise ValueError("options must be a non-empty list of labels")
    region = _answer_region(text)
    found = []
    for option in options:
        match = re.search(rf"\b{re.escape(option)}", region, re.IGNORECASE)
        if match:
            found.append((match.start(), -len(option), option))
    return min(found)[2] if found else None


def extract_pattern(text: str, pattern: str) -> str | None:
    """The first match of ``pattern`` after the last "answer is", else in the whole reply; None when absent."""
    match = re.search(pattern, _answer_region(text))
    return match.group(0) if match else None


def extract_answer(task: Task, text: str) -> str | None:
    """The task's answer read from a model reply (None when the reply holds no answer of the right kind)."""
    if task.answer_type == "option":
        return extract_option(text, task.options)
    if task.answer_type == "number":
        return extract_number(text)
    return extract_pattern(text, task.answer_pattern)


def is_correct(task: Task, prediction: str | None, item: Item) -> bool:
    """Exact match after canonical spelling (numbers) or case folding (options and patterns)."""
    if prediction is None:
        return False
    if task.answer_type == "number":
        return prediction == canonical_number(item.answer)
    return prediction.casefold() == item.answer.casefold()


# --------------------------------------------------------------------------------------------- option scoring
@torch.inference_mode()
def score_options(model, prompt_ids: list[int], options_ids: list[list[int]],
                  length_normalize: bool = False) -> torch.Tensor:
    """log P(option | prompt) for each option: the sum of its tokens' log-probabilities (mean if normalised).

    The prompt is run once; its KV cache is copied for every option, and the options run as one right-padded batch
    (causal attention means padding at the end cannot change the real positions before it).
    """
    if not prompt_ids:
        raise ValueError("prompt_ids must hold at least one token")
    if not options_ids or any(len(option) == 0 for option in options_ids):
        raise ValueError("options_ids must be a non-empty list of non-empty token-id lists")
    longest = max(len(option) for option in options_ids)
    cache = model.new_cache(1, len(prompt_ids) + longest)
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=model.device)
    first_logp = torch.log_softmax(model(prompt, cache=cache, last_only=True)[0, -1], dim=-1)
    firsts = torch.tensor([option[0] for option in options_ids], device=model.device)
    totals = first_logp[firsts].clone()
    if longest > 1:
        rows = [option + [option[0]] * (longest - len(option)) for option in options_ids]  # pad with a real id
        batch = torch.tensor(rows, dtype=torch.long, device=model.device)
        cache.reorder(torch.zeros(len(rows), dtype=torch.long, device=model.device))
        logp = torch.log_softmax(model(batch[:, :-1], cache=cache), dim=-1)  # position j predicts token j + 1
        picked = logp.gather(2, batch[:, 1:, None])[..., 0]
        lengths = torch.tensor([len(option) for option in options_ids], device=model.device)
        real = torch.arange(1, longest, device=model.device)[None] < lengths[:, None]
        totals = totals + (picked * real).sum(1)
    if length_normalize:
        totals = totals / torch.tensor([len(option) for option in options_ids], device=model.device)
    return totals.float().cpu()


def choose_option(model, tokenizer, prompt: Prompt, options: tuple[str, ...] | list[str],
                  length_normalize: bool = False) -> tuple[str, torch.Tensor]:
    """The option with the highest log-likelihood after ``prompt``, and every option's score."""
    scores = score_options(model, prompt.token_ids(tokenizer), [tokenizer.encode(o) for o in options],
                           length_normalize=length_normalize)
    return options[int(scores.argmax())], scores


# ------------------------------------------------------------------------------------------------- evaluation
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


_LINE_END_RE = re.compile(r"[.!?]?\s*\n|[.!?]\s")


def answer_line_complete(task: Task, text: str) -> bool:
    """True once ``text`` holds "answer is" followed by an answer of the task's kind and the end of that sentence.

    Used to stop a chain-of-thought reply as soon as its answer is written: what a model adds after "The answer is
    13. " cannot change what ``extract_answer`` reads (it reads after the LAST "answer is", so a later, second answer
    line would; stopping keeps the first).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    markers = list(_MARKER_RE.finditer(text))
    if not markers:
        return False
    region = text[markers[-1].end():]
    end = _LINE_END_RE.search(region)
    if end is None:
        return False
    return extract_answer(task, region[:end.start() + 1]) is not None


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
    complete answer line: see ``answer_line_complete``); ``seconds`` is the wall time of generation alone.
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
    for batch_index, start in enumerate(range(0, len(prompts), batch_size)):
        rows = prompts[start:start + batch_size]
        began = time.perf_counter()
        result = generate(model, rows, max_new_tokens=max_new_tokens, tokenizer=tokenizer, eos_id=tokenizer.eos_id,
                          sampling=sampling, seed=None if sample_seed is None else sample_seed + batch_index,
                          stream=_answer_stopper(task, tokenizer, len(rows)) if stop_at_answer else None)
        seconds += time.perf_counter() - began
        outputs += result.texts
        lengths += [len(tokens) for tokens in result.tokens]
        finished += result.finished
    predictions = [extract_answer(task, text) for text in outputs]
    correct = [is_correct(task, p, item) for p, item in zip(predictions, items)]
    return EvalResult(task.name, strategy, sum(correct) / len(items), sum(lengths) / len(lengths), seconds,
                      outputs, predictions, correct, finished)


def _answer_stopper(task: Task, tokenizer, n_rows: int):
    """A ``generate`` stream callback that ends each row once its answer line is complete."""
    seen: list[list[int]] = [[] for _ in range(n_rows)]
    stopped: set[int] = set()

    def callback(tokens: list) -> list[int]:
        newly = []
        for row, token in enumerate(tokens):
            if token is None or row in stopped:
                continue
            seen[row].append(token)
            if answer_line_complete(task, tokenizer.decode(seen[row])):
                stopped.add(row)
                newly.append(row)
        return newly

    return callback


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


CONTENT_FREE_INPUTS = ("N/A", "[MASK]")  # Zhao et al. 2021's content-free test inputs


@torch.inference_mode()
def option_scores(model, tokenizer, task: Task, strategy: str = "zero-shot", items: list[Item] | None = None,
                  k: int = 3, seed: int = 0, instruction: str | None = None, questions: list[str] | None = None,
                  options: tuple[str, ...] | list[str] | None = None, prefill: str = "",
                  length_normalize: bool = False) -> torch.Tensor:
    """log P(option | prompt) for every item (rows) and option (columns), summed over the option's tokens.

    ``questions`` replaces the items' questions (e.g. content-free inputs for calibration). ``options``: the strings
    scored (default: the task's labels; e.g. ``" sport"`` with a leading space after a ``prefill`` such as
    ``"Topic:"``, so that every label is one token). ``length_normalize``: the mean per token instead of the sum.
    """
    if task.answer_type != "option":
        raise ValueError(f"task {task.name!r} has answer_type {task.answer_type!r}; option scoring needs 'option'")
    if strategy in COT_STRATEGIES:
        raise ValueError(f"option scoring reads the answer directly; use a direct strategy, not {strategy!r}")
    if questions is None:
        items = list(task.items if items is None else items)
        questions = [item.question for item in items]
    if not questions:
        raise ValueError("items/questions must be non-empty (None = the task's test items)")
    options = tuple(task.options if options is None else options)
    option_ids = [tokenizer.encode(o) for o in options]
    rows = []
    for question in questions:
        prompt = build_prompt(task, strategy, question, k, seed, instruction)
        prompt = Prompt(prompt.messages, prompt.prefill + prefill)
        rows.append(score_options(model, prompt.token_ids(tokenizer), option_ids, length_normalize))
    return torch.stack(rows)


def calibrate_scores(scores: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021, *Calibrate Before Use*) of option log-likelihoods.

    ``scores``: (items, options) log-likelihoods; ``content_free``: (inputs, options) for content-free questions such
    as "N/A". Both are renormalised over the options; the content-free probabilities are averaged into a prior
    ``p_cf``, and each item's probabilities are divided by it (``W = diag(p_cf)^-1``, no bias). Returns calibrated
    log-scores: an option wins when the question raises it most ABOVE the prompt's own preference.
    """
    if scores.ndim != 2 or content_free.ndim != 2 or scores.shape[1] != content_free.shape[1]:
        raise ValueError(f"scores (items, options) and content_free (inputs, options) must share the options axis, "
                         f"got {tuple(scores.shape)} and {tuple(content_free.shape)}")
    prior = torch.softmax(content_free.double(), dim=-1).mean(0)
    return (torch.log_softmax(scores.double(), dim=-1) - prior.log()).float()


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


def evaluate_options(model, tokenizer, task: Task, strategy: str = "zero-shot", items: list[Item] | None = None,
                     k: int = 3, seed: int = 0, instruction: str | None = None, calibrate: bool = False,
                     length_normalize: bool = False, options: tuple[str, ...] | list[str] | None = None,
                     prefill: str = "") -> float:
    """Accuracy when the answer is the option with the highest log-likelihood (no generation, no format errors).

    ``calibrate``: divide by the prompt's own preference first (``calibrate_scores`` with ``CONTENT_FREE_INPUTS``).
    ``options``/``prefill``: score other spellings of the labels (same order as ``task.options``) after a prefill,
    e.g. ``[" sport", ...]`` after ``"Topic:"`` (see ``option_scores``).
    """
    check_bool("calibrate", calibrate)
    items = list(task.items if items is None else items)
    if not items:
        raise ValueError("items must be a non-empty list (None = the task's test items)")
    spelling = dict(options=options, prefill=prefill, length_normalize=length_normalize)
    scores = option_scores(model, tokenizer, task, strategy, items, k, seed, instruction, **spelling)
    if calibrate:
        free = option_scores(model, tokenizer, task, strategy, None, k, seed, instruction,
                             questions=list(CONTENT_FREE_INPUTS), **spelling)
        scores = calibrate_scores(scores, free)
    choices = [task.options[int(i)] for i in scores.argmax(1)]
    return sum(c == item.answer for c, item in zip(choices, items)) / len(items)
