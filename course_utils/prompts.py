"""Prompt builders: the chat messages (and assistant prefill) of each prompting strategy.

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

import random
from dataclasses import dataclass

from .prompt_tasks import Item, Task
from .validation import check_int

STRATEGIES = ("zero-shot", "few-shot", "expert", "few-shot-cot", "zero-shot-cot")
COT_STRATEGIES = ("few-shot-cot", "zero-shot-cot")
ZERO_SHOT_COT_TRIGGER = "Let's think step by step."
ANSWER_MARKER = "The answer is"


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

