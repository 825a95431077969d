"""Greedy replies stopped once settled: the first ISO date, when a reply's scores are final, order and equivalence."""
from __future__ import annotations

import random

import pytest

from course_utils.generation import generate
from course_utils.reply_scoring import exact_match, first_iso_date, greedy_replies, iso_date_settled
from course_utils.streaming import settled_stopper


def test_first_iso_date():
    assert first_iso_date("It is 2019-02-15, or 2020-01-01.") == "2019-02-15"
    assert first_iso_date("12019-02-155") == "2019-02-15"
    assert first_iso_date("2019-2-15") is None
    with pytest.raises(TypeError, match="text must be a string"):
        first_iso_date(None)


@pytest.mark.parametrize("text, settled", [
    ("", False), ("2019-02-1", False), ("2019-02-15", False), ("  2019-02-15 \n", False),
    ("It is 2019-02-15", True), ("2019-02-15.", True), ("2019-02-15\n\nThat", True),
    ("\ufffd2019-02-15", False), ("no date yet", False),
])
def test_iso_date_settled(text, settled):
    assert iso_date_settled(text) is settled


def test_settled_replies_keep_both_scores_whatever_follows():
    """Once settled, no continuation changes the first date or whether the stripped reply is exactly a date."""
    rng = random.Random(0)
    alphabet = "0123456789-  \nab."
    gold = "2019-02-15"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        text = text[:rng.randint(0, len(text))] + rng.choice([gold, "2020-01-01", ""]) + text
        for cut in range(len(text) + 1):
            if iso_date_settled(text[:cut]):
                prefix = text[:cut]
                assert first_iso_date(prefix) == first_iso_date(text)
                assert exact_match([prefix], [gold]) == exact_match([text], [gold])
                break


class _DigitTokenizer:
    """Token i is the character str(i % 10); enough for a stopper that reads text."""

    eos_id = 0

    def decode(self, ids):
        return "".join(str(i % 10) for i in ids)


def test_settled_stopper_ends_each_row_once():
    stop = settled_stopper(_DigitTokenizer(), 2, lambda text: len(text) >= 2)
    assert stop([3, 4]) == []
    assert stop([5, None]) == [0]
    assert stop([6, 7]) == [1]
    with pytest.raises(TypeError, match="settled must be a function"):
        settled_stopper(_DigitTokenizer(), 2, "no")


def test_greedy_replies_keep_the_order_and_match_generate(tiny_model):
    tokenizer = _DigitTokenizer()
    rows = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]
    expected = generate(tiny_model, rows, max_new_tokens=4, eos_id=tokenizer.eos_id, tokenizer=tokenizer).texts
    replies = greedy_replies(tiny_model, tokenizer, rows, max_new_tokens=4, batch_size=3)
    assert replies == [text.strip() for text in expected]
    stopped = greedy_replies(tiny_model, tokenizer, rows, max_new_tokens=4, batch_size=2,
                             stop_when=lambda text: len(text) >= 2)
    assert all(reply == full[:len(reply)] and len(reply) <= 2 for reply, full in zip(stopped, replies))
    with pytest.raises(ValueError, match="at least one prompt"):
        greedy_replies(tiny_model, tokenizer, [], max_new_tokens=4)
    with pytest.raises(TypeError, match="stop_when"):
        greedy_replies(tiny_model, tokenizer, rows, stop_when=3)
