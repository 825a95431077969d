"""Command line of the course: ``python -m course_utils fetch`` (what ``make setup`` runs)."""
from __future__ import annotations

import sys

from .fetch import fetch_weights
from .load_weights import load_checkpoint


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["fetch"]:
        print("usage: python -m course_utils fetch", file=sys.stderr)
        return 2
    path = fetch_weights()
    load_checkpoint(path)  # build the fast converted copy now, so the first notebook starts quickly
    print(f"course weights ready: {path}")
    return 0
