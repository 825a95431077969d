"""Command line: ``python -m course_utils fetch`` downloads, verifies and prepares the course weights."""
import sys

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
