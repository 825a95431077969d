#!/usr/bin/env python3
"""Set the course up on a free cloud GPU notebook (Colab, Kaggle): clone it, install it, fetch the weights.

Standard library only: it runs before the course is installed. Safe to run again: it does nothing when
``course_utils`` is already importable (a local checkout, CI, or a second run), reuses an existing clone, and keeps
the cloud's preinstalled torch when that torch fits the course's range in pyproject.toml.

    python cloud_setup.py                      # clone COURSE_REPOSITORY into ~/llm-course, install, fetch
    python cloud_setup.py --repository PATH_OR_URL --dest DIR [--pip-arg=--no-deps] [--skip-fetch]

The notebook cell that runs it is printed by ``tools/setup_cell.py``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

# The course's public git repository: the ONE place its address is kept (tools/setup_cell.py builds the notebooks'
# setup cell from it, and a test checks pyproject's [project.urls] Repository against it once that is set).
# Maintainers: set it when the repository is published (README, "Run on Colab or Kaggle").
COURSE_REPOSITORY = ""
DEFAULT_DEST = Path.home() / "llm-course"
PACKAGE = "course_utils"

_OPERATORS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
              "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


class SetupError(RuntimeError):
    """A step failed; the message says what to do."""


def say(message: str) -> None:
    print(f"[course setup] {message}", flush=True)


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.14.1+cu126' -> (2, 14, 1): the release numbers (local build tags and pre-release suffixes dropped)."""
    if not isinstance(version, str):
        raise TypeError(f"version must be a string, got {type(version).__name__}")
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        raise ValueError(f"not a version number: {version!r}")
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()  # 2.14.0 == 2.14
    return tuple(numbers)


def satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` meets a comma-separated specifier such as '>=2.13,<=2.14.1' (no wildcards)."""
    clauses = [clause.strip() for clause in specifier.split(",") if clause.strip()]
    for clause in clauses:
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.+]*)", clause)
        if match is None:
            raise ValueError(f"unsupported version clause {clause!r} in {specifier!r} (use >=, <=, >, <, ==, !=)")
        operator, bound = match.groups()
        if not _OPERATORS[operator](version_tuple(version), version_tuple(bound)):
            return False
    return True


def project_metadata(clone: Path) -> dict:
    """The [project] table of the clone's pyproject.toml."""
    pyproject = clone / "pyproject.toml"
    if not pyproject.is_file():
        raise SetupError(f"{clone} holds no pyproject.toml: it is not a clone of the course")
    with open(pyproject, "rb") as file:
        return tomllib.load(file)["project"]


def torch_range(project: dict) -> str:
    """The course's torch specifier, e.g. '>=2.13,<=2.14.1', from its dependencies."""
    for requirement in project.get("dependencies", []):
        match = re.fullmatch(r"torch\s*([<>=!].*)", requirement.strip())
        if match:
            return match.group(1).replace(" ", "")
    raise SetupError("the course's pyproject.toml lists no torch requirement")


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(command: list[str], what: str, cwd: Path | None = None) -> None:
    say(f"{what}: {' '.join(command)}")
    result = subprocess.run(command, cwd=cwd)
    if result.returncode != 0:
        raise SetupError(f"{what} failed (exit code {result.returncode}); the output above says why")


def clone_course(repository: str, dest: Path) -> Path:
    """Clone ``repository`` (URL or local path) into ``dest``, or reuse ``dest`` when it already holds the course."""
    if (dest / "pyproject.toml").is_file() and (dest / PACKAGE).is_dir():
        say(f"using the course already cloned in {dest}")
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise SetupError(f"{dest} exists and is not a clone of the course; remove it or pass --dest ANOTHER_FOLDER")
    run(["git", "clone", "--depth", "1", repository, str(dest)], "cloning the course")
    return dest


def install_course(clone: Path, pip_args: list[str]) -> None:
    """``pip install -e clone``, keeping the preinstalled torch when it fits the course's range."""
    project = project_metadata(clone)
    python_range = project.get("requires-python", "")
    here = ".".join(map(str, sys.version_info[:3]))
    if python_range and not satisfies(here, python_range):
        raise SetupError(f"the course needs Python {python_range}; this notebook runs Python {here}")
    wanted = torch_range(project)
    torch_version = installed_version("torch")
    command = [sys.executable, "-m", "pip", "install", *pip_args, "-e", str(clone)]
    with tempfile.TemporaryDirectory() as folder:
        if torch_version and satisfies(torch_version, wanted):
            say(f"keeping the preinstalled torch {torch_version} (the course needs torch{wanted})")
            constraints = Path(folder) / "keep-torch.txt"
            constraints.write_text(f"torch=={torch_version}\n")
            command[4:4] = ["--constraint", str(constraints)]
        elif torch_version:
            say(f"WARNING: the preinstalled torch {torch_version} is outside the course's range torch{wanted}; "
                f"pip installs a matching torch from PyPI (the CUDA build on Linux, several GB)")
        else:
            say(f"no torch here yet: pip installs torch{wanted} from PyPI (the CUDA build on Linux, several GB)")
        run(command, "installing the course")


def fetch_weights(clone: Path) -> None:
    """``python -m course_utils fetch`` in a fresh process (it sees the package just installed)."""
    run([sys.executable, "-m", PACKAGE, "fetch"], "fetching the model weights", cwd=clone)


def setup(repository: str | None = None, dest: Path = DEFAULT_DEST, pip_args: list[str] | None = None,
          skip_fetch: bool = False) -> str:
    """Clone, install and fetch unless ``course_utils`` is importable; returns what was done ('nothing' or 'set up')."""
    found = importlib.util.find_spec(PACKAGE)
    if found is not None:
        say(f"{PACKAGE} is already installed ({Path(found.origin).parent}): nothing to do")
        return "nothing"
    dest = Path(dest).expanduser().resolve()
    repository = repository or COURSE_REPOSITORY
    if not repository and not (dest / "pyproject.toml").is_file():
        raise SetupError("COURSE_REPOSITORY is not set in tools/cloud_setup.py yet: maintainers set it to the "
                         "course's public git URL (README, 'Run on Colab or Kaggle'); until then pass "
                         "--repository URL_OR_PATH")
    clone = clone_course(repository, dest)
    install_course(clone, list(pip_args or []))
    if skip_fetch:
        say("skipping the weights (--skip-fetch); `python -m course_utils fetch` gets them later")
    else:
        fetch_weights(clone)
    say(f"done: the course is in {clone}. In a notebook already running, restart it or add the folder to sys.path.")
    return "set up"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", help="git URL or local path of the course (default: COURSE_REPOSITORY)")
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get("COURSE_CLONE", DEFAULT_DEST)),
                        help=f"where to clone it (default: $COURSE_CLONE or {DEFAULT_DEST})")
    parser.add_argument("--pip-arg", action="append", default=[], dest="pip_args",
                        help="extra argument for pip install, repeatable (e.g. --pip-arg=--no-deps)")
    parser.add_argument("--skip-fetch", action="store_true", help="do not fetch the model weights")
    args = parser.parse_args(argv)
    try:
        setup(args.repository, args.dest, args.pip_args, args.skip_fetch)
    except SetupError as error:
        say(f"ERROR: {error}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
