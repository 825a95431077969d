"""Beam search (``generate(num_beams > 1)``): keep the ``num_beams`` best partial sequences of each prompt.

Finished sequences are ranked by their length-normalised log-probability, and a prompt stops by Hugging Face's
``early_stopping=False`` rule; prompts are batched with the padding of ``decoding_io``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .decoding_io import NO_EOS, GenerationResult, check_settings, left_pad, prompt_rows
from .sampling import nonfinite_rows
from .validation import check_int, check_real


def _add_hypothesis(pool: list, entry: tuple, keep: int) -> None:
    """Put ``entry`` (score first) into ``pool``, best first, and keep only the best ``keep``."""
    pool.append(entry)
    pool.sort(key=lambda h: h[0], reverse=True)
    del pool[keep:]


@torch.inference_mode()
def _beam_loop(model, rows, max_new_tokens, num_beams, length_penalty, eos_id):
    batch, beams = len(rows), num_beams
    ids, mask = left_pad([r for r in rows for _ in range(beams)], model.device)
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
    rows = prompt_rows(prompts, None, model.config.vocab_size)
    eos_id = check_settings(model, rows, max_new_tokens, eos_id)
    num_beams = check_int("num_beams", num_beams, minimum=1)
    length_penalty = check_real("length_penalty", length_penalty, hint="1 = average log-prob per token")
    tokens, logprobs, finished, scores = _beam_loop(model, rows, max_new_tokens, num_beams, length_penalty, eos_id)
    return GenerationResult(tokens, logprobs, finished, scores=scores)
