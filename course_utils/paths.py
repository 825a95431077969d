"""Where the course's own files live: the repository checkout, its data/ folder (or ``COURSE_DATA``), its notebooks.

The package is code only; the course data (hand-written task sets, the generated dates sample) lives in the
repository's ``data/`` folder. An editable install from a clone finds it beside the package. A wheel installed
elsewhere finds it through the ``COURSE_DATA`` environment variable, and says so clearly when it is unset.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
_CHECKOUT_DATA = REPO_ROOT / "data"


def data_dir() -> Path:
    """The course's data folder: env ``COURSE_DATA`` if set, else ``data/`` of the checkout the package sits in."""
    configured = os.environ.get("COURSE_DATA")
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"COURSE_DATA={configured!r} is not a folder; point it at the data/ folder of a "
                                    f"clone of the course repository")
        return path
    if _CHECKOUT_DATA.is_dir():
        return _CHECKOUT_DATA
    raise FileNotFoundError(f"course_utils is installed without the course repository, so there is no data/ folder "
                            f"beside it ({_CHECKOUT_DATA} does not exist). Set COURSE_DATA=/path/to/course/data, or "
                            f"install from a clone with `pip install -e .` (what `make setup` does)")


def __getattr__(name: str) -> Path:
    # DATA_DIR is looked up when used, so that importing the package never needs the data folder
    if name == "DATA_DIR":
        return data_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
