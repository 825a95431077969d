"""The sampling explorer's state: the prompt, the tokens chosen so far, cached next-token logits, the step records.

Everything here is plain Python and testable without a browser; it draws nothing. The candidate table of a step is
in `course_utils.candidates`, the HTML views of this state (coloured text, the step log) in
`course_utils.widgets.explorer_html`, the widgets in `course_utils.widgets`.
The model runs once per generated token; changing the sampling settings re-warps the cached logits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from course_utils.candidates import CandidateTable, candidate_table, entropy_bits, warped_view
from course_utils.sampling import SamplingConfig, sample_next
from course_utils.threads import single_thread
from course_utils.validation import check_int, check_text


@dataclass(frozen=True)
class StepRecord:
    """One generated token: what was chosen, how likely it was, and the settings at that moment."""
    step: int
    token_id: int
    text: str
    prob_model: float
    prob_sampled: float
    n_kept: int
    kept_mass: float
    entropy_after: float
    settings: str


def describe_config(config: SamplingConfig) -> str:
    """Short human-readable settings, e.g. 'T=0.7 top-k=40 top-p=0.9' (only the active warpers)."""
    if config.is_greedy:
        parts = ["greedy"]
    else:
        parts = [f"T={config.temperature:g}"]
        if config.top_k > 0:
            parts.append(f"top-k={config.top_k}")
        if config.top_p < 1.0:
            parts.append(f"top-p={config.top_p:g}")
        if config.min_p > 0.0:
            parts.append(f"min-p={config.min_p:g}")
    if config.repetition_penalty != 1.0:
        parts.append(f"rep={config.repetition_penalty:g}")
    return " ".join(parts)


class SamplingExplorer:
    """State of an interactive generation: the prompt, the tokens chosen so far, the settings, a seeded generator.

    The next-token logits are computed once per position (with a KV cache) and cached, so changing
    :attr:`config` only re-warps them. ``model_calls`` counts forward passes, so tests can check that.
    """

    def __init__(self, model, tokenizer, prompt: str, config: SamplingConfig | None = None, seed: int = 0,
                 top_n: int = 12, max_new_tokens: int = 200):
        vocab = model.config.vocab_size
        top_n = check_int("top_n", top_n, minimum=1, maximum=vocab, hint="candidates shown; at most the vocabulary")
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
        if config is not None and not isinstance(config, SamplingConfig):
            raise TypeError(f"config must be None or a SamplingConfig, got {type(config).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.top_n = top_n
        self.max_new_tokens = max_new_tokens
        self.config = config if config is not None else SamplingConfig()
        self.model_calls = 0
        self._seed = 0
        self.set_seed(seed)
        self.set_prompt(prompt)

    # --- state changes -------------------------------------------------------------------------------------
    def set_prompt(self, prompt: str) -> None:
        """Start again from a new prompt (clears the generated tokens, re-seeds the generator)."""
        prompt = check_text("prompt", prompt)
        prompt_ids = self.tokenizer.encode(prompt)
        if len(prompt_ids) + self.max_new_tokens > self.model.config.max_seq_len:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens + {self.max_new_tokens} new tokens exceeds the "
                             f"context length {self.model.config.max_seq_len}")
        self.prompt = prompt
        self.prompt_ids = prompt_ids
        self.reset()

    def set_seed(self, seed: int) -> None:
        """Use ``seed`` from the next reset on (and reset now, so the same seed gives the same text)."""
        self._seed = check_int("seed", seed, minimum=0)
        if hasattr(self, "prompt_ids"):
            self.reset()

    @property
    def seed(self) -> int:
        return self._seed

    def update_config(self, **changes) -> SamplingConfig:
        """Replace some sampling settings (validated by SamplingConfig); the model does not run again."""
        self.config = dataclasses.replace(self.config, **changes)
        return self.config

    def reset(self) -> None:
        """Forget the generated tokens, keep the prompt and settings, re-seed the generator."""
        self.generated_ids: list[int] = []
        self.records: list[StepRecord] = []
        self.generator = torch.Generator().manual_seed(self._seed)
        self._cache = None
        self._logits: torch.Tensor | None = None

    # --- reading the state ---------------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.generated_ids

    @property
    def finished(self) -> bool:
        """True after the end-of-sequence token or when ``max_new_tokens`` tokens were generated."""
        at_eos = bool(self.generated_ids) and self.generated_ids[-1] == self.tokenizer.eos_id
        return at_eos or len(self.generated_ids) >= self.max_new_tokens

    @property
    def text(self) -> str:
        return self.prompt + self.tokenizer.decode(self.generated_ids)

    def next_logits(self) -> torch.Tensor:
        """Raw next-token logits [vocab] (float32, CPU) for the current text; computed once per position."""
        if self._logits is None:
            if self._cache is None:
                self._cache = self.model.new_cache(1, len(self.prompt_ids) + self.max_new_tokens)
            new_ids = self.ids[self._cache.length:]
            with torch.no_grad():
                inputs = torch.tensor([new_ids], dtype=torch.long, device=self.model.device)
                self._logits = self.model(inputs, cache=self._cache, last_only=True)[0, -1].float().cpu()
            self.model_calls += 1
        return self._logits

    def candidates(self) -> CandidateTable:
        """The candidate table of the current step under the current settings (no model call if cached)."""
        logits = self.next_logits()
        with single_thread():
            top = torch.topk(logits, self.top_n).indices.tolist()
            return candidate_table(logits, self.config, self.tokenizer.token_strings(top), self.ids)

    # --- generating ----------------------------------------------------------------------------------------
    def step(self) -> StepRecord | None:
        """Choose one token with the current settings and append it; None if generation has finished."""
        if self.finished:
            return None
        logits = self.next_logits()
        with single_thread():
            record = self._choose(logits)
        self.generated_ids.append(record.token_id)
        self.records.append(record)
        self._logits = None
        return record

    def _choose(self, logits: torch.Tensor) -> StepRecord:
        warped, kept = warped_view(logits, self.config, self.ids)
        token_id = int(sample_next(logits, self.config, generator=self.generator, previous_ids=self.ids))
        probs = torch.softmax(logits.double(), -1)
        return StepRecord(
            step=len(self.generated_ids) + 1,
            token_id=token_id,
            text=self.tokenizer.decode([token_id]),
            prob_model=float(probs[token_id]),
            prob_sampled=float(torch.softmax(warped.double(), -1)[token_id]),
            n_kept=int(kept.sum()),
            kept_mass=float(probs[kept].sum()),
            entropy_after=entropy_bits(warped),
            settings=describe_config(self.config),
        )

    def generate(self, n_tokens: int) -> list[StepRecord]:
        """Up to ``n_tokens`` steps (fewer if the end-of-sequence token comes first)."""
        n_tokens = check_int("n_tokens", n_tokens, minimum=1)
        records = []
        for _ in range(n_tokens):
            record = self.step()
            if record is None:
                break
            records.append(record)
        return records
