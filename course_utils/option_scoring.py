"""Answering by log-likelihood: score a fixed set of options after a prompt, calibrate, and count accuracy."""
from __future__ import annotations

import torch

from .prefix_cache import PrefixCache, prefix_for
from .prompt_tasks import Item, Task
from .prompts import COT_STRATEGIES, Prompt, build_prompt
from .validation import check_bool, check_int

CONTENT_FREE_INPUTS = ("N/A", "[MASK]")  # Zhao et al. 2021's content-free test inputs


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


@torch.inference_mode()
def score_option_batch(model, prompts: list[list[int]], options_ids: list[list[int]], length_normalize: bool = False,
                       prefix: PrefixCache | None = None, batch_size: int = 8) -> torch.Tensor:
    """``score_options`` for many prompts at once: a tensor [prompts, options] of log P(option | prompt).

    Prompts run ``batch_size`` at a time, left-padded and masked; with ``prefix`` (a ``PrefixCache`` every prompt
    starts with, see ``prefix_cache.prefix_for``) only each prompt's own suffix is run, after a copy of the prefix's
    keys/values. Then every row's cache is repeated once per option, and the options' later tokens run as one batch.
    Equal to ``score_options`` row by row up to float rounding.
    """
    if not isinstance(prompts, (list, tuple)) or not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token-id lists")
    if not options_ids or any(len(option) == 0 for option in options_ids):
        raise ValueError("options_ids must be a non-empty list of non-empty token-id lists")
    check_int("batch_size", batch_size, minimum=1)
    if prefix is not None:
        if not isinstance(prefix, PrefixCache):
            raise TypeError(f"prefix must be None or a PrefixCache, got {type(prefix).__name__}")
        prefix.check_model(model)
    shared = len(prefix) if prefix is not None else 0
    rows = prefix.suffixes(prompts) if prefix is not None else [list(p) for p in prompts]
    device, n_options = model.device, len(options_ids)
    longest = max(len(option) for option in options_ids)
    lengths = torch.tensor([len(option) for option in options_ids], device=device)
    firsts = torch.tensor([option[0] for option in options_ids], device=device)
    padded = torch.tensor([option + [option[0]] * (longest - len(option)) for option in options_ids],
                          dtype=torch.long, device=device)  # right-padded with a real id; the padding is not counted
    real = torch.arange(1, longest, device=device)[None] < lengths[:, None]  # [options, longest - 1]
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        size, width = len(chunk), shared + max(len(row) for row in chunk)
        ids = torch.tensor([[row[0]] * (width - shared - len(row)) + row for row in chunk], dtype=torch.long,
                           device=device)
        total = width + longest - 1
        cache = prefix.expand(model, size, total) if prefix is not None else model.new_cache(size, total)
        mask = torch.ones(size, total, dtype=torch.long, device=device)
        for index, row in enumerate(chunk):
            mask[index, shared:width - len(row)] = 0  # the left padding of this row's suffix
        first_logp = torch.log_softmax(model(ids, cache=cache, attention_mask=mask[:, :width], last_only=True)[:, -1],
                                       dim=-1)
        totals = first_logp[:, firsts]  # [rows, options]
        if longest > 1:
            cache.reorder(torch.arange(size, device=device).repeat_interleave(n_options))
            batch = padded.repeat(size, 1)  # row r * n_options + j: option j after prompt r
            logits = model(batch[:, :-1], cache=cache, attention_mask=mask.repeat_interleave(n_options, dim=0))
            picked = torch.log_softmax(logits, dim=-1).gather(2, batch[:, 1:, None])[..., 0]
            totals = totals + (picked.reshape(size, n_options, -1) * real).sum(-1)
        out.append(totals)
    scores = torch.cat(out)
    if length_normalize:
        scores = scores / lengths
    return scores.float().cpu()


def choose_option(model, tokenizer, prompt: Prompt, options: tuple[str, ...] | list[str],
                  length_normalize: bool = False) -> tuple[str, torch.Tensor]:
    """The option with the highest log-likelihood after ``prompt``, and every option's score."""
    scores = score_options(model, prompt.token_ids(tokenizer), [tokenizer.encode(o) for o in options],
                           length_normalize=length_normalize)
    return options[int(scores.argmax())], scores


@torch.inference_mode()
def option_scores(model, tokenizer, task: Task, strategy: str = "zero-shot", items: list[Item] | None = None,
                  k: int = 3, seed: int = 0, instruction: str | None = None, questions: list[str] | None = None,
                  options: tuple[str, ...] | list[str] | None = None, prefill: str = "",
                  length_normalize: bool = False) -> torch.Tensor:
    """log P(option | prompt) for every item (rows) and option (columns), summed over the option's tokens.

    ``questions`` replaces the items' questions (e.g. content-free inputs for calibration). ``options``: the strings
    scored (default: the task's labels; e.g. ``" sport"`` with a leading space after a ``prefill`` such as
    ``"Topic:"``, so that every label is one token). ``length_normalize``: the mean per token instead of the sum.
    The prompts' shared prefix (system message, instruction, examples) is run once (``prefix_cache``).
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
        rows.append(Prompt(prompt.messages, prompt.prefill + prefill).token_ids(tokenizer))
    return score_option_batch(model, rows, option_ids, length_normalize, prefix=prefix_for(model, rows))


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
    questions = [item.question for item in items] + (list(CONTENT_FREE_INPUTS) if calibrate else [])
    scores = option_scores(model, tokenizer, task, strategy, None, k, seed, instruction, questions, **spelling)
    if calibrate:  # one call for the items and the content-free inputs: they share one prompt prefix
        scores = calibrate_scores(scores[:len(items)], scores[len(items):])
    choices = [task.options[int(i)] for i in scores.argmax(1)]
    return sum(c == item.answer for c, item in zip(choices, items)) / len(items)
