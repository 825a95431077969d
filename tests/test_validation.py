"""The shared argument checks: TypeError for a wrong type, ValueError for a wrong value, one message per rule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_utils.validation import check_bool, check_choice, check_int, check_real, check_text, check_token_ids


@pytest.mark.parametrize("value", [3, np.int64(3), np.int8(3)])
def test_check_int_accepts_python_and_numpy_integers(value):
    assert check_int("n", value, minimum=1) == 3 and type(check_int("n", value)) is int


@pytest.mark.parametrize("value, error, message", [
    (2.5, TypeError, r"n must be an integer >= 1, got 2\.5"), (2.0, TypeError, r"got 2\.0"),
    (True, TypeError, "got True"), ("3", TypeError, "got '3'"), (0, ValueError, "n must be an integer >= 1, got 0"),
])
def test_check_int_refuses(value, error, message):
    with pytest.raises(error, match=message):
        check_int("n", value, minimum=1)


def test_check_int_range_wording():
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 4\] \(the pool size\), got 5"):
        check_int("k", 5, minimum=0, maximum=4, hint="the pool size")
    with pytest.raises(ValueError, match="k must be an integer <= 4, got 5"):
        check_int("k", 5, maximum=4)



def test_check_int_multiple_of():
    assert check_int("head_dim", np.int64(64), minimum=2, multiple_of=2) == 64
    with pytest.raises(ValueError, match=r"head_dim must be an even integer >= 2 \(pairs\), got 63"):
        check_int("head_dim", 63, minimum=2, multiple_of=2, hint="pairs")
    with pytest.raises(TypeError, match=r"head_dim must be an even integer >= 2, got 64\.0"):
        check_int("head_dim", 64.0, minimum=2, multiple_of=2)
    with pytest.raises(ValueError, match=r"n must be an integer multiple of 3 in \[0, 9\], got 4"):
        check_int("n", 4, minimum=0, maximum=9, multiple_of=3)

@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5).half()])
def test_check_real_accepts_real_scalars_and_returns_a_float(value):
    result = check_real("t", value, low=0, low_open=True)
    assert type(result) is float and result == 0.5


@pytest.mark.parametrize("value, error, message", [
    (True, TypeError, "got True"), (np.bool_(True), TypeError, r"got np.True_ \(bool\)"), ("1", TypeError, "got '1'"),
    (torch.tensor([1.0]), TypeError, r"0-d and real, got shape \(1,\)"), (None, TypeError, "got None"),
    (math.nan, ValueError, "got nan"), (math.inf, ValueError, "got inf"), (0.0, ValueError, "got 0.0"),
    (1.5, ValueError, r"got 1\.5"), (torch.tensor(math.nan), ValueError, "got nan"),
])
def test_check_real_refuses(value, error, message):
    with pytest.raises(error, match=r"p must be a number in \(0, 1\]") as caught:
        check_real("p", value, low=0, high=1, low_open=True)
    assert caught.type is error and caught.match(message)


def test_check_real_may_allow_infinity_but_never_nan():
    assert check_real("x", math.inf, low=0, finite=False) == math.inf
    with pytest.raises(ValueError, match="x must be a number >= 0, got nan"):
        check_real("x", math.nan, low=0, finite=False)


def test_check_bool_and_choice():
    assert check_bool("flag", np.bool_(False)) is False
    with pytest.raises(TypeError, match="flag must be True or False, got 1"):
        check_bool("flag", 1)
    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b', got 'c'"):
        check_choice("mode", "c", ("a", "b"))
    with pytest.raises(TypeError, match="mode must be one of 'a', 'b', got 3"):
        check_choice("mode", 3, ("a", "b"))


def test_check_token_ids():
    assert check_token_ids("ids", [[1, np.int64(2)], [3]], 5) == [[1, 2], [3]]
    assert check_token_ids("ids", list(torch.tensor([4, 0])), 5) == [4, 0]
    with pytest.raises(TypeError, match=r"ids\[0\]\[1\] must be one of integer token ids in \[0, 4\], got 1\.0"):
        check_token_ids("ids", [[1, 1.0]], 5)
    with pytest.raises(ValueError, match=r"ids\[1\] must be one of integer token ids in \[0, 4\], got 5"):
        check_token_ids("ids", [0, 5], 5)
    with pytest.raises(TypeError, match="dtype torch.float32"):
        check_token_ids("ids", torch.tensor([1.0]), 5)
    with pytest.raises(ValueError, match="got ids from -1 to 2"):
        check_token_ids("ids", torch.tensor([-1, 2]), 5)
    with pytest.raises(TypeError, match="a list \\(or tensor\\) of integer token ids >= 0, got 'abc'"):
        check_token_ids("ids", "abc")


def test_check_text():
    assert check_text("name", "SmolLM2") == "SmolLM2"
    with pytest.raises(TypeError, match=r"name must be a non-empty string, got 3"):
        check_text("name", 3)
    with pytest.raises(ValueError, match=r"name must be a non-empty string \(shown to people\), got '  '"):
        check_text("name", "  ", hint="shown to people")
