#!/usr/bin/env python3
"""Print the notebooks' setup cell (the code cell right after each title cell) for Colab and Kaggle.

The cell clones the course (address: ``COURSE_REPOSITORY`` in tools/cloud_setup.py, the one place it is kept) and
runs tools/cloud_setup.py from the clone, only where ``course_utils`` cannot be imported; elsewhere (a local checkout,
CI, a second run) it does nothing and prints nothing. Re-run this after changing COURSE_REPOSITORY and paste the new
cell into every notebook (tests/test_cloud_setup.py checks that the notebooks' cells match).

    python tools/setup_cell.py
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

MARKER = "# Colab / Kaggle setup"  # the first line of the cell; tests find the cell by it


def load_cloud_setup():
    """tools/cloud_setup.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cloud_setup", Path(__file__).with_name("cloud_setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell_source(repository: str) -> str:
    """The setup cell's source for a course published at ``repository`` ('' while it is not published)."""
    if not isinstance(repository, str):
        raise TypeError(f"repository must be a string, got {type(repository).__name__}")
    return f'''{MARKER}: does nothing where the course is installed (README, "Run on Colab or Kaggle").
import importlib.util, pathlib, subprocess, sys
if importlib.util.find_spec("course_utils") is None:
    COURSE_REPOSITORY = {repository!r}  # from tools/cloud_setup.py
    COURSE = pathlib.Path.home() / "llm-course"
    if not (COURSE / "tools" / "cloud_setup.py").exists():
        if not COURSE_REPOSITORY:
            raise RuntimeError("this copy of the course names no repository to clone: see its README")
        subprocess.run(["git", "clone", "--depth", "1", COURSE_REPOSITORY, str(COURSE)], check=True)
    subprocess.run([sys.executable, str(COURSE / "tools" / "cloud_setup.py"), "--dest", str(COURSE)], check=True)
    sys.path.insert(0, str(COURSE))  # importable now, without restarting the kernel'''


def main() -> int:
    print(cell_source(load_cloud_setup().COURSE_REPOSITORY))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
