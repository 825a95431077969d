"""Text generation with a KV cache: greedy decoding, sampling with the warpers of ``sampling.py``, and beam search.

Batches of prompts are left-padded and masked, every row stops at its own end-of-sequence token, and a seeded
``torch.Generator`` makes sampling reproducible (same seed, same device -> same text).
One file of ~350 lines on purpose: greedy, sampling and beam search share the padding of prompts, the cache and the
one host read per step, and split apart they would each repeat that plumbing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .prefix_cache import PrefixCache
from .sampling import SamplingConfig, _choose, nonfinite_rows
from .validation import check_int, check_real, check_token_ids

NO_EOS = -1  # pass as eos_id to never stop before max_new_tokens
GREEDY = SamplingConfig(temperature=0.0)

StreamCallback = Callable[[list], None]


@dataclass
class GenerationResult:
    """What ``generate`` returns, one entry per prompt.

    ``tokens``: the new token ids. A row that stopped on the end-of-sequence token INCLUDES it as its last token.
    ``logprobs``: for each new token, log P(token | everything before it) under the model's own, UNwarped
    distribution (log-softmax of the raw logits: no temperature, truncation or repetition penalty), so
    ``sum(logprobs[i])`` is the chain-rule log-probability of row i's continuation, EOS included.
    ``finished``: True where the row stopped on EOS rather than on ``max_new_tokens``.
    ``texts``: the decoded new tokens without the EOS (only when a tokenizer was given).
    ``scores``: beam search only: the returned beam's sum of log-probs / length ** length_penalty.
    """

    tokens: list[list[int]]
    logprobs: list[list[float]]
    finished: list[bool]
    texts: list[str] | None = None
    scores: list[float] | None = None

    @property
    def total_logprobs(self) -> list[float]:
        """Chain-rule log-probability of each row's new tokens given its prompt."""
        return [float(sum(row)) for row in self.logprobs]


def _prompt_ids(prompts: Sequence, tokenizer, vocab_size: int) -> list[list[int]]:
    if isinstance(prompts, (str, torch.Tensor)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of strings or of token-id lists (one per row), "
                        f"got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts must hold at least one prompt, got an empty list")
    if all(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise ValueError("string prompts need tokenizer=...; or pass lists of token ids")
        rows = [tokenizer.encode(p) for p in prompts]
    elif all(isinstance(p, Sequence) and not isinstance(p, str) for p in prompts):
        rows = check_token_ids("prompts", prompts, vocab_size)  # floats such as 504.9 are refused, never truncated
    else:
        raise TypeError("prompts must be all strings or all token-id lists, not a mix")
    if any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token; an empty prompt has nothing to continue")
    return rows


def _left_pad(rows: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ids [B, L] padded on the left, and the attention mask (None when no row needs padding).

    Padding repeats the row's first token: it is masked out of attention, and it is a token the row already holds,
    so the repetition penalty sees the same set of previous tokens with or without padding.
    """
    width = max(len(r) for r in rows)
    ids = torch.tensor([[r[0]] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    if all(len(r) == width for r in rows):
        return ids, None
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def _check_settings(model, rows: list[list[int]], max_new_tokens: int, eos_id: int | None) -> int:
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    vocab = model.config.vocab_size
    if eos_id is None:
        eos_id = model.config.eos_id if model.config.eos_id is not None else NO_EOS
    eos_id = check_int("eos_id", eos_id, minimum=NO_EOS, maximum=vocab - 1,
                       hint=f"None = the model's, {NO_EOS} = never stop")
    longest = max(len(r) for r in rows) + max_new_tokens
    if longest > model.config.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {longest} exceeds the context length {model.config.max_seq_len}")
    return eos_id


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
    ids, mask = _left_pad(rows, model.device)
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
        token = _choose(logits, sampling, generator, previous)
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


def _add_hypothesis(pool: list, entry: tuple, keep: int) -> None:
    pool.append(entry)
    pool.sort(key=lambda h: h[0], reverse=True)
    del pool[keep:]


@torch.inference_mode()
def _beam_loop(model, rows, max_new_tokens, num_beams, length_penalty, eos_id):
    batch, beams = len(rows), num_beams
    ids, mask = _left_pad([r for r in rows for _ in range(beams)], model.device)
    width = ids.shape[1]
    total = width + max_new_tokens
    cache = model.new_cache(batch * beams, total)
    full_mask = None
    if mask is not None:
        full_mask = torch.ones(batch * beams, total, dtype=torch.long, device=model.device)
        full_mask[:, :width] = mask
    scores = torch.zeros(batch, beams, device=model.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first at step one
    seqs = torch.empty(batch * beams, 0, dtype=torch.long, device=model.device)
    seq_logprobs = torch.empty(batch * beams, 0, device=model.device)
    pools: list[list] = [[] for _ in range(batch)]  # (score, tokens, logprobs, finished)
    done = [False] * batch
    logits = model(ids, cache=cache, attention_mask=mask, last_only=True)[:, -1]
    filler = eos_id if eos_id != NO_EOS else 0
    for step in range(max_new_tokens):
        bad = nonfinite_rows(logits)
        logits = logits.masked_fill(bad[:, None], 0.0)
        logp = torch.log_softmax(logits, dim=-1)
        vocab = logp.shape[-1]
        candidates = (scores.reshape(-1, 1) + logp).reshape(batch, beams * vocab)
        top_scores, top_index = candidates.topk(2 * beams, dim=-1)
        # One read per step: scores, beam/token indices (exact in float64) and the bad-row flags together.
        packed = torch.cat([top_scores.double(), top_index.double(), bad.reshape(batch, beams).double()], dim=1)
        packed = packed.tolist()
        top_scores = [row[:2 * beams] for row in packed]
        top_beam = [[int(i) // vocab for i in row[2 * beams:4 * beams]] for row in packed]
        top_token = [[int(i) % vocab for i in row[2 * beams:4 * beams]] for row in packed]
        bad_prompts = [b for b, row in enumerate(packed) if not done[b] and any(row[4 * beams:])]
        if bad_prompts:
            raise ValueError(f"the model's logits for prompt(s) {bad_prompts[:5]} hold NaN/+inf or no finite value "
                             f"(at new token {step}), so beam search cannot rank continuations; check the weights "
                             f"(a diverged fine-tune) or the dtype (float16 overflow)")
        next_scores = [[0.0] * beams for _ in range(batch)]
        next_beam = [list(range(beams)) for _ in range(batch)]
        next_token = [[filler] * beams for _ in range(batch)]
        for b in range(batch):
            if done[b]:
                continue
            kept = 0
            for rank in range(2 * beams):
                score, beam, token = top_scores[b][rank], top_beam[b][rank], top_token[b][rank]
                row = b * beams + beam
                if token == eos_id:
                    if rank < beams:  # an EOS ranked below the live beams would never have been chosen
                        tokens = seqs[row].tolist() + [token]
                        lps = seq_logprobs[row].tolist() + [float(logp[row, token])]
                        _add_hypothesis(pools[b], (score / len(tokens) ** length_penalty, tokens, lps, True), beams)
                    continue
                next_scores[b][kept], next_beam[b][kept], next_token[b][kept] = score, beam, token
                kept += 1
                if kept == beams:
                    break
            if len(pools[b]) == beams:  # Hugging Face's early_stopping=False test
                best_live = max(next_scores[b]) / (step + 1) ** length_penalty
                done[b] = pools[b][-1][0] >= best_live
        if all(done):
            break
        source = (torch.arange(batch, device=model.device)[:, None] * beams
                  + torch.tensor(next_beam, device=model.device)).reshape(-1)
        chosen = torch.tensor(next_token, device=model.device).reshape(-1)
        seqs = torch.cat([seqs[source], chosen[:, None]], dim=1)
        seq_logprobs = torch.cat([seq_logprobs[source], logp[source, chosen][:, None]], dim=1)
        scores = torch.tensor(next_scores, device=model.device)
        if step + 1 == max_new_tokens:
            break
        cache.reorder(source)
        step_mask = full_mask[:, :width + step + 1] if full_mask is not None else None
        logits = model(chosen[:, None], cache=cache, attention_mask=step_mask)[:, -1]
    for b in range(batch):
        if done[b]:
            continue
        for k in range(beams):
            row = b * beams + k
            tokens, lps = seqs[row].tolist(), seq_logprobs[row].tolist()
            if tokens:
                _add_hypothesis(pools[b], (float(scores[b, k]) / len(tokens) ** length_penalty, tokens, lps, False),
                                beams)
    best = [pool[0] for pool in pools]
    return [h[1] for h in best], [h[2] for h in best], [h[3] for h in best], [h[0] for h in best]


def beam_search(model, prompts: Sequence[Sequence[int]], num_beams: int, max_new_tokens: int = 64,
                length_penalty: float = 1.0, eos_id: int | None = None) -> GenerationResult:
    """Beam search over token-id prompts: keep the ``num_beams`` best partial sequences by total log-probability.

    Finished sequences are ranked by sum(log p) / length ** ``length_penalty`` (length = new tokens incl. EOS);
    a prompt stops when ``num_beams`` sequences have finished and no live beam can still beat the worst of them
    (Hugging Face's ``early_stopping=False`` rule). With ``num_beams=1`` this is greedy decoding.
    """
    rows = _prompt_ids(prompts, None, model.config.vocab_size)
    eos_id = _check_settings(model, rows, max_new_tokens, eos_id)
    num_beams = check_int("num_beams", num_beams, minimum=1)
    length_penalty = check_real("length_penalty", length_penalty, hint="1 = average log-prob per token")
    tokens, logprobs, finished, scores = _beam_loop(model, rows, max_new_tokens, num_beams, length_penalty, eos_id)
    return GenerationResult(tokens, logprobs, finished, scores=scores)


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
    rows = _prompt_ids(prompts, tokenizer, model.config.vocab_size)
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
        eos_id = _check_settings(model, rows, max_new_tokens, eos_id)
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


def settled_stopper(tokenizer, n_rows: int, settled: Callable[[str], bool]):
    """A ``generate`` stream callback that ends each row as soon as ``settled(its reply so far)`` is True."""
    n_rows = check_int("n_rows", n_rows, minimum=1)
    if not callable(settled):
        raise TypeError(f"settled must be a function of the reply text, got {type(settled).__name__}")
    seen: list[list[int]] = [[] for _ in range(n_rows)]
    stopped: set[int] = set()

    def callback(tokens: list) -> list[int]:
        newly = []
        for row, token in enumerate(tokens):
            if token is None or row in stopped:
                continue
            seen[row].append(token)
            if settled(tokenizer.decode(seen[row])):
                stopped.add(row)
                newly.append(row)
        return newly

    return callback


def text_streamer(tokenizer, row: int = 0, write: Callable[[str], object] | None = None) -> StreamCallback:
    """A ``stream`` callback that writes row ``row``'s new text as it is generated (default: print it at once).

    Byte-level tokens can split a character; text is held back until it decodes cleanly.
    """
    row = check_int("row", row, minimum=0)
    seen: list[int] = []
    shown = [0]

    def callback(tokens: list) -> None:
        if row >= len(tokens):
            raise ValueError(f"row {row} does not exist in a batch of {len(tokens)}")
        if tokens[row] is None or tokens[row] == tokenizer.eos_id:
            return
        seen.append(tokens[row])
        text = tokenizer.decode(seen)
        if not text.endswith("\ufffd"):
            piece = text[shown[0]:]
            if write is None:
                print(piece, end="", flush=True)
            else:
                write(piece)
            shown[0] = len(text)

    return callback


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
