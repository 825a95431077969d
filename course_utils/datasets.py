"""A generated fine-tuning task: rewrite a date written in some everyday style as ISO 8601 (YYYY-MM-DD).

Example: "Convert the date to ISO 8601: the 3rd of March 2021" -> "2021-03-03". The generator is seeded, every
example's answer is computed (never hand-written), and the train and test splits never share a calendar date, so a
correct answer on the test split cannot come from memorising a training pair.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from pathlib import Path

import torch

from .paths import data_dir
from .validation import check_choice, check_int, check_real

INSTRUCTION = "Convert the date to ISO 8601:"
SYSTEM_PROMPT = "You convert dates."  # short, so training sequences stay short (the default one is 3x longer)
DATE_STYLES = ("ordinal", "us_long", "day_month", "abbrev", "weekday", "dotted")
FIRST_DAY = date(1950, 1, 1)
LAST_DAY = date(2049, 12, 31)
SAMPLE_SEED = 0
SAMPLE_SIZES = {"train": 1000, "test": 300}


@dataclass(frozen=True)
class DateExample:
    """One task example: the prompt text for the user turn, the expected answer, and the style used."""

    prompt: str
    answer: str
    style: str


def ordinal(day: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 11 -> '11th', 22 -> '22nd'."""
    day = check_int("day", day, minimum=1, maximum=31)
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def render_date(day: date, style: str) -> str:
    """The date written in one of ``DATE_STYLES`` (English month names, unambiguous day/month order)."""
    month, short = day.strftime("%B"), day.strftime("%b")
    styles = {
        "ordinal": f"the {ordinal(day.day)} of {month} {day.year}",
        "us_long": f"{month} {day.day}, {day.year}",
        "day_month": f"{day.day} {month} {day.year}",
        "abbrev": f"{short} {day.day} {day.year}",
        "weekday": f"{day.strftime('%A')}, {day.day} {month} {day.year}",
        "dotted": f"{day.day:02d}.{day.month:02d}.{day.year} (day.month.year)",
    }
    return styles[check_choice("style", style, DATE_STYLES)]


def make_example(day: date, style: str) -> DateExample:
    """The prompt for ``day`` written in ``style`` and its ISO 8601 answer."""
    return DateExample(prompt=f"{INSTRUCTION} {render_date(day, style)}", answer=day.isoformat(), style=style)


def make_date_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[list[DateExample], list[DateExample]]:
    """Seeded train and test examples over 1950-2049 whose calendar dates are disjoint; styles drawn uniformly."""
    span = (LAST_DAY - FIRST_DAY).days + 1
    n_train = check_int("n_train", n_train, minimum=0)
    n_test = check_int("n_test", n_test, minimum=0)
    if n_train + n_test > span:
        raise ValueError(f"n_train + n_test must be at most {span} (one example per calendar date), "
                         f"got {n_train + n_test}")
    seed = check_int("seed", seed, minimum=0)
    rng = random.Random(seed)
    offsets = rng.sample(range(span), n_train + n_test)
    examples = [make_example(FIRST_DAY + timedelta(days=offset), rng.choice(DATE_STYLES)) for offset in offsets]
    return examples[n_test:], examples[:n_test]


def save_jsonl(examples: list[DateExample], path: str | os.PathLike) -> None:
    """Write examples as JSON lines (to a temporary file first, then renamed, so a crash leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(asdict(example), ensure_ascii=False) + "\n")
    os.replace(handle.name, path)


def read_jsonl_records(path: str | os.PathLike, fix: str) -> list[tuple[int, dict]]:
    """(line number, JSON object) for every non-blank line of a UTF-8 JSON-lines file.

    Every problem raises a ValueError naming the file and the line: a missing file or a folder, bytes that are not
    UTF-8, invalid JSON, or a line that is not a JSON object. ``fix`` says how to repair or regenerate the file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a JSON-lines file; {fix}")
    if not path.is_file():
        raise ValueError(f"no such file: {path}; {fix}")
    records = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, line {number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                             f"{error.start + 1}); save the file as UTF-8, or {fix}") from None
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}, column {error.colno}); "
                             f"{fix}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}; {fix}")
        records.append((number, record))
    return records


_REGENERATE = "regenerate it with `python -m course_utils.datasets`"


def load_jsonl(path: str | os.PathLike) -> list[DateExample]:
    """Read examples written by ``save_jsonl``; an empty file, a malformed line or a repeated prompt is an error."""
    path = Path(path)
    keys = sorted(field.name for field in fields(DateExample))
    examples, first_line = [], {}
    for number, record in read_jsonl_records(path, _REGENERATE):
        if sorted(record) != keys or not all(isinstance(value, str) and value for value in record.values()):
            raise ValueError(f"{path}, line {number}: expected non-empty strings under exactly the keys {keys}, "
                             f"got {sorted(record)}; {_REGENERATE}")
        if record["prompt"] in first_line:
            raise ValueError(f"{path}, line {number}: duplicate of line {first_line[record['prompt']]} "
                             f"({record['prompt']!r}); every date appears once, so {_REGENERATE}")
        first_line[record["prompt"]] = number
        examples.append(DateExample(**record))
    if not examples:
        raise ValueError(f"{path} holds no examples (the file is empty); {_REGENERATE}")
    return examples


def sample_paths() -> dict[str, Path]:
    """Where the committed sample of each split lives."""
    return {split: data_dir() / "dates" / f"{split}.jsonl" for split in SAMPLE_SIZES}


def write_sample() -> dict[str, Path]:
    """Regenerate the committed sample in data/dates/ from the seeded generator."""
    train, test = make_date_splits(SAMPLE_SIZES["train"], SAMPLE_SIZES["test"], seed=SAMPLE_SEED)
    paths = sample_paths()
    save_jsonl(train, paths["train"])
    save_jsonl(test, paths["test"])
    return paths


LINE_KINDS = ("-", "|", "\\", "/")


def line_images(n: int, kinds: tuple[str, str], generator: torch.Generator, size: int = 12,
                noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy vision task for LoRA on convolutions: noisy ``size`` x ``size`` images holding one bright line.

    The line has one of the two orientations in ``kinds`` (each from ``LINE_KINDS``: horizontal, vertical and the
    two diagonals, wrapping around the border) at a random offset; the label says which one. Returns images
    [n, 1, size, size] and labels [n].
    """
    n = check_int("n", n, minimum=1)
    size = check_int("size", size, minimum=5)
    check_real("noise", noise, low=0)
    if len(kinds) != 2 or not set(kinds) <= set(LINE_KINDS) or kinds[0] == kinds[1]:
        raise ValueError(f"kinds must be two different orientations from {LINE_KINDS}, got {kinds!r}")
    labels = torch.randint(0, 2, (n,), generator=generator)
    offsets = torch.randint(2, size - 2, (n, 1, 1), generator=generator)
    rows, cols = torch.arange(size).view(1, size, 1), torch.arange(size).view(1, 1, size)
    masks = {"-": (rows == offsets) & (cols >= 0), "|": (cols == offsets) & (rows >= 0),
             "\\": cols == (rows + offsets) % size, "/": cols == (offsets - rows) % size}
    lines = torch.where(labels.view(n, 1, 1) == 0, masks[kinds[0]], masks[kinds[1]])
    images = noise * torch.randn(n, size, size, generator=generator) + lines.float()
    return images.unsqueeze(1), labels


if __name__ == "__main__":
    for split, written in write_sample().items():
        print(f"{split}: {written}")
