"""Prompting tasks: the labelled ``Item``/``Task`` records and reading them from the course's JSONL files."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .datasets import read_jsonl_records
from .paths import data_dir

ANSWER_TYPES = ("option", "number", "pattern")


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

