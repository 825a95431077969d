"""``generate()``: greedy decoding and sampling with a KV cache, batches, end-of-sequence, streaming; and ``chat``.

Batches of prompts are left-padded and masked, every row stops at its own end-of-sequence token, and a seeded
``torch.Generator`` makes sampling reproducible (same seed, same device -> same text). ``num_beams > 1`` hands the
prompts to ``beam_search``; the stream callbacks are in ``streaming``, the prompt checks and the result type in
``decoding_io``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .beam_search import beam_search
from .decoding_io import NO_EOS, GenerationResult, check_settings, left_pad, prompt_rows
from .prefix_cache import PrefixCache
from .sampling import SamplingConfig, nonfinite_rows, sample_next_unchecked
from .streaming import StreamCallback
from .validation import check_int

GREEDY = SamplingConfig(temperature=0.0)


def _stop_lengths(new: torch.Tensor, eos_id: int) -> tuple[list[int], list[bool]]:
    """Per row: how many new tokens count (up to and including the first EOS) and whether EOS was reached."""
    steps = new.shape[1]
    if eos_id == NO_EOS:
        return [steps] * new.shape[0], [False] * new.shape[0]
    is_eos = new == eos_id
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(new[:, 0], steps))
    return first.tolist(), is_eos.any(1).tolist()


@torch.inference_mode()
def _decode_loop(model, rows, max_new_tokens, sampling, eos_id, generator, stream, prefix=None):
    shared = len(prefix) if prefix is not None else 0  # rows are [shared prefix | left padding | own suffix]
    if prefix is not None:
        rows = prefix.suffixes(rows)
    batch = len(rows)
    ids, mask = left_pad(rows, model.device)
    width = shared + ids.shape[1]  # the prompt columns, prefix included
    total = width + max_new_tokens
    cache = prefix.expand(model, batch, total) if prefix is not None else model.new_cache(batch, total)
    full_mask = None
    if mask is not None:
        full_mask = torch.ones(batch, total, dtype=torch.long, device=model.device)
        full_mask[:, shared:width] = mask
    history = None  # prompt + new ids, only needed by the repetition penalty
    if sampling.repetition_penalty != 1:
        start = torch.tensor([prefix.ids], device=model.device).expand(batch, -1) if prefix is not None else ids[:, :0]
        history = torch.cat([start, ids, ids.new_zeros(batch, max_new_tokens)], dim=1)
    new = torch.empty(batch, max_new_tokens, dtype=torch.long, device=model.device)
    logprobs = torch.empty(batch, max_new_tokens, device=model.device)
    done = torch.zeros(batch, dtype=torch.bool, device=model.device)
    # Rows whose logits hold NaN/+inf or no finite value (all -inf) cannot choose a token. They are flagged on the
    # device and read together with what the loop reads anyway (stream ids, end-of-sequence), never on their own.
    first_bad = torch.full((batch,), -1, dtype=torch.long, device=model.device)  # step a row first went bad
    first_mask = full_mask[:, :width] if full_mask is not None else None
    logits = model(ids, cache=cache, attention_mask=first_mask, last_only=True)[:, -1]
    steps = 0
    for step in range(max_new_tokens):
        bad = nonfinite_rows(logits) & ~done
        first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
        logits = logits.masked_fill(bad[:, None], 0.0)  # keep torch's sampler away from NaN; the error comes below
        previous = history[:, :width + step] if history is not None else None
        token = sample_next_unchecked(logits, sampling, generator, previous)
        if eos_id != NO_EOS:
            token = token.masked_fill(done, eos_id)  # finished rows idle on EOS; their extra steps are dropped
        new[:, step] = token
        logprobs[:, step] = logits.gather(1, token[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
        if history is not None:
            history[:, width + step] = token
        all_done = False
        if stream is not None:  # the one read per step: new ids, which rows had finished, the bad-row flags
            ids_now, done_now, bad_now = torch.stack([token, done.long(), bad.long()]).tolist()
            _raise_if_bad(first_bad, any(bad_now))
            stop_rows = stream([None if finished else t for t, finished in zip(ids_now, done_now)])
            if stop_rows and eos_id != NO_EOS:  # the callback ended these rows: from the next step they idle on EOS
                done[list(stop_rows)] = True
                done_now = [d or row in stop_rows for row, d in enumerate(done_now)]
            all_done = eos_id != NO_EOS and all(d or t == eos_id for t, d in zip(ids_now, done_now))
        steps = step + 1
        if eos_id != NO_EOS:
            done |= token == eos_id
            if stream is None:  # the one read per step: end-of-sequence flags and the bad-row flag together
                all_done, any_bad = torch.stack([done.all(), (first_bad >= 0).any()]).tolist()
                _raise_if_bad(first_bad, any_bad)
            if all_done:
                break
        if steps == max_new_tokens:
            break
        step_mask = full_mask[:, :width + steps] if full_mask is not None else None
        logits = model(token[:, None], cache=cache, attention_mask=step_mask)[:, -1]
    _raise_if_bad(first_bad, eos_id == NO_EOS and stream is None and bool((first_bad >= 0).any()))  # once, at the end
    new, logprobs = new[:, :steps], logprobs[:, :steps]
    lengths, finished = _stop_lengths(new, eos_id)
    new_list, lp_list = new.tolist(), logprobs.tolist()
    return ([row[:n] for row, n in zip(new_list, lengths)], [row[:n] for row, n in zip(lp_list, lengths)],
            finished, None)


def _raise_if_bad(first_bad: torch.Tensor, any_bad: bool) -> None:
    """Raise the non-finite-logits error when ``any_bad`` (already read); ``first_bad``: per row, its first bad step."""
    if not any_bad:
        return
    steps = first_bad.tolist()
    rows = [row for row, step in enumerate(steps) if step >= 0]
    raise ValueError(f"the model's logits for row(s) {rows[:5]} hold NaN/+inf or no finite value (first at new token "
                     f"{min(steps[r] for r in rows)}), so no next token can be chosen; check the weights (a diverged "
                     f"fine-tune, e.g. too high a learning rate) or the dtype (float16 overflow)")


def generate(model, prompts: Sequence, max_new_tokens: int = 64, sampling: SamplingConfig | None = None,
             num_beams: int = 1, length_penalty: float = 1.0, seed: int | None = None, eos_id: int | None = None,
             stream: StreamCallback | None = None, tokenizer=None, prefix: PrefixCache | None = None
             ) -> GenerationResult:
    """Continue each prompt by up to ``max_new_tokens`` tokens, one batched forward pass per step with a KV cache.

    ``prompts``: a list of strings (needs ``tokenizer``) or of token-id lists; they are used as given (no chat
    template: see ``chat``). ``sampling``: None = greedy; otherwise a ``SamplingConfig``. ``num_beams`` > 1 runs
    beam search (greedy scoring only). ``seed``: seeds a fresh ``torch.Generator`` so the same seed gives the same
    text. ``eos_id``: None = the model's end-of-sequence id, ``NO_EOS`` = never stop early. ``stream``: called after
    every step with one new id per row (None for rows that already finished); if it returns a non-empty collection of
    row indices, those rows end there as if the next token were EOS (e.g. once an answer line is complete).
    ``prefix``: a ``PrefixCache`` that every prompt starts with (``prefix_cache.prefix_for``): its keys/values are
    copied instead of recomputed for every row; the result equals that of the plain call up to float rounding.
    """
    rows = prompt_rows(prompts, tokenizer, model.config.vocab_size)
    if sampling is not None and not isinstance(sampling, SamplingConfig):
        raise TypeError(f"sampling must be None (greedy) or a SamplingConfig, got {type(sampling).__name__}")
    if seed is not None:
        seed = check_int("seed", seed, minimum=0, hint="or None")
    num_beams = check_int("num_beams", num_beams, minimum=1)
    if stream is not None and not callable(stream):
        raise TypeError(f"stream must be None or a function of one list of ids, got {type(stream).__name__}")
    if prefix is not None:
        if not isinstance(prefix, PrefixCache):
            raise TypeError(f"prefix must be None or a PrefixCache, got {type(prefix).__name__}")
        prefix.check_model(model)
    if num_beams > 1:
        if sampling is not None or stream is not None or prefix is not None:
            raise ValueError("beam search (num_beams > 1) supports neither sampling, stream nor prefix; "
                             "use num_beams=1")
        result = beam_search(model, rows, num_beams, max_new_tokens, length_penalty, eos_id)
    else:
        eos_id = check_settings(model, rows, max_new_tokens, eos_id)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=model.device).manual_seed(seed)
        tokens, logprobs, finished, _ = _decode_loop(model, rows, max_new_tokens, sampling or GREEDY, eos_id,
                                                     generator, stream, prefix)
        result = GenerationResult(tokens, logprobs, finished)
    if tokenizer is not None:
        result.texts = [tokenizer.decode(row[:-1] if done else row)
                        for row, done in zip(result.tokens, result.finished)]
    return result


def chat(model, tokenizer, user_message: str, system: str | None = None, **kwargs) -> str:
    """Answer one user message through the model's chat template; ``kwargs`` go to ``generate``."""
    if not isinstance(user_message, str):
        raise TypeError(f"user_message must be a string, got {type(user_message).__name__}")
    if not user_message:
        raise ValueError("user_message must be a non-empty string, got ''")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_message}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    kwargs.setdefault("eos_id", tokenizer.eos_id)
    return generate(model, [ids], tokenizer=tokenizer, **kwargs).texts[0]
