#!/usr/bin/env python3
"""Print the notebooks' setup cell (the code cell right after each title cell) for Colab and Kaggle.

The cell gets the course, clones it from ``COURSE_REPOSITORY`` (tools/cloud_setup.py, the one place the address is
kept) or, while that is empty, copies a .zip of it uploaded next to the notebook (or a Kaggle dataset holding it), and
runs tools/cloud_setup.py from that copy, only where ``course_utils`` cannot be imported; elsewhere (a local checkout,
CI, a second run) it does nothing and prints nothing. After changing COURSE_REPOSITORY, run it with ``--write`` to
put the new cell into every notebook (tests/test_cloud_setup.py checks that the notebooks' cells match).

    python tools/setup_cell.py            # print the cell
    python tools/setup_cell.py --write    # insert or update it right after the title cell of every notebook
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import uuid
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
import glob, importlib.util, pathlib, shutil, subprocess, sys, zipfile
if importlib.util.find_spec("course_utils") is None:
    COURSE_REPOSITORY = {repository!r}  # from tools/cloud_setup.py
    COURSE = pathlib.Path.home() / "llm-course"
    if not (COURSE / "tools" / "cloud_setup.py").exists() and COURSE_REPOSITORY:
        subprocess.run(["git", "clone", "--depth", "1", COURSE_REPOSITORY, str(COURSE)], check=True)
    elif not (COURSE / "tools" / "cloud_setup.py").exists():  # a copy uploaded as a .zip, or a Kaggle dataset
        UNPACKED = COURSE.with_name("llm-course-upload")
        for archive in map(zipfile.ZipFile, sorted(glob.glob("*.zip"))):
            if any(name.endswith("tools/cloud_setup.py") for name in archive.namelist()):
                archive.extractall(UNPACKED)
        found = sorted(glob.glob(f"{{UNPACKED}}/**/tools/cloud_setup.py", recursive=True)
                       + glob.glob("/kaggle/input/**/tools/cloud_setup.py", recursive=True))
        if not found:
            raise RuntimeError("no copy of the course found: upload its .zip first (README, 'Run on Colab or Kaggle')")
        shutil.copytree(pathlib.Path(found[0]).parents[1], COURSE)
    subprocess.run([sys.executable, str(COURSE / "tools" / "cloud_setup.py"), "--dest", str(COURSE)], check=True)
    sys.path.insert(0, str(COURSE))  # importable now, without restarting the kernel'''


def write_into(notebook: Path, source: str) -> str:
    """Put the setup cell right after ``notebook``'s title cell; returns 'inserted', 'updated' or 'unchanged'."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    cells = content["cells"]
    if not cells or cells[0]["cell_type"] != "markdown":
        raise ValueError(f"{notebook}: the first cell must be the title (markdown) cell")
    if len(cells) > 1 and "".join(cells[1]["source"]).startswith(MARKER):
        if "".join(cells[1]["source"]) == source:
            return "unchanged"
        cells[1]["source"], state = source.splitlines(keepends=True), "updated"
    else:
        cells.insert(1, {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {},
                         "outputs": [], "source": source.splitlines(keepends=True)})
        state = "inserted"
    notebook.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="insert or update the cell in every notebook")
    args = parser.parse_args(argv)
    source = cell_source(load_cloud_setup().COURSE_REPOSITORY)
    if not args.write:
        print(source)
        return 0
    for notebook in sorted((Path(__file__).resolve().parents[1] / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in notebook.parts:
            print(f"{notebook.name}: {write_into(notebook, source)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
