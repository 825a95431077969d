"""Stream callbacks for ``generate(stream=...)``: show one row's text as it comes, or stop rows once settled.

``generate`` calls the callback after every step with one new id per row (None for rows that already finished); a
callback that returns row indices ends those rows there, as if their next token were the end-of-sequence token.
"""
from __future__ import annotations

from collections.abc import Callable, Collection

from .validation import check_int

StreamCallback = Callable[[list], Collection[int] | None]  # new ids (None = finished row) -> rows to stop


def settled_stopper(tokenizer, n_rows: int, settled: Callable[[str], bool]) -> StreamCallback:
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
