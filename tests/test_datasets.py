"""The generated date task: correct answers, every style, disjoint seeded splits, committed sample reproducible."""
from __future__ import annotations

from datetime import date

import pytest
import torch

from course_utils.datasets import (
    DATE_STYLES,
    INSTRUCTION,
    SAMPLE_SEED,
    SAMPLE_SIZES,
    line_images,
    load_jsonl,
    make_date_splits,
    make_example,
    ordinal,
    render_date,
    sample_paths,
    save_jsonl,
)


def test_worked_example_and_styles():
    example = make_example(date(2021, 3, 3), "ordinal")
    assert example.prompt == f"{INSTRUCTION} the 3rd of March 2021" and example.answer == "2021-03-03"
    rendered = {style: render_date(date(2024, 2, 29), style) for style in DATE_STYLES}
    assert rendered == {"ordinal": "the 29th of February 2024", "us_long": "February 29, 2024",
                        "day_month": "29 February 2024", "abbrev": "Feb 29 2024",
                        "weekday": "Thursday, 29 February 2024", "dotted": "29.02.2024 (day.month.year)"}


@pytest.mark.parametrize("day, text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                       (13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (31, "31st")])
def test_ordinals(day, text):
    assert ordinal(day) == text


def test_splits_are_seeded_disjoint_and_varied():
    train, test = make_date_splits(500, 200, seed=7)
    assert (train, test) == make_date_splits(500, 200, seed=7)
    assert make_date_splits(500, 200, seed=8) != (train, test)
    assert len(train) == 500 and len(test) == 200
    assert not {e.answer for e in train} & {e.answer for e in test}
    assert {e.style for e in test} == set(DATE_STYLES)
    for example in train[:50]:
        assert date.fromisoformat(example.answer).isoformat() == example.answer


def test_invalid_arguments():
    with pytest.raises(ValueError, match="style must be one of 'ordinal', .*got 'roman'"):
        render_date(date(2020, 1, 1), "roman")
    with pytest.raises(ValueError, match="n_train must be an integer >= 0, got -1"):
        make_date_splits(-1, 5)
    with pytest.raises(ValueError, match="at most 36525"):
        make_date_splits(40000, 5)
    with pytest.raises(ValueError, match=r"day must be an integer in \[1, 31\], got 0"):
        ordinal(0)


def test_jsonl_round_trip(tmp_path):
    train, _ = make_date_splits(20, 0, seed=1)
    save_jsonl(train, tmp_path / "x.jsonl")
    assert load_jsonl(tmp_path / "x.jsonl") == train
    with pytest.raises(ValueError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_committed_sample_matches_generator():
    train, test = make_date_splits(SAMPLE_SIZES["train"], SAMPLE_SIZES["test"], seed=SAMPLE_SEED)
    paths = sample_paths()
    assert load_jsonl(paths["train"]) == train
    assert load_jsonl(paths["test"]) == test


def test_line_images_draw_the_labelled_orientation():
    images, labels = line_images(40, ("\\", "/"), torch.Generator().manual_seed(0), size=8, noise=0.0)
    assert images.shape == (40, 1, 8, 8) and set(labels.tolist()) == {0, 1}
    rows = torch.arange(8)
    for image, label in zip(images[:, 0], labels):
        lit = image.nonzero().tolist()
        assert len(lit) == 8 and sorted(r for r, _ in lit) == rows.tolist()  # one pixel per row
        steps = {(c2 - c1) % 8 for (_, c1), (_, c2) in zip(lit, lit[1:])}
        assert steps == ({1} if label == 0 else {7})  # "\" moves right each row, "/" moves left
    with pytest.raises(ValueError, match="two different orientations"):
        line_images(4, ("-", "-"), torch.Generator())
