"""Reading answers out of model replies: the extraction rules, exact-match scoring and the complete-answer-line test."""
from __future__ import annotations

import re

from .prompt_tasks import Item, Task

_MARKER_RE = re.compile(r"answer is\s*:?", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_LINE_END_RE = re.compile(r"[.!?]?\s*\n|[.!?]\s")


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
