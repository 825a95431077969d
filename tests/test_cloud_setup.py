"""tools/cloud_setup.py (the Colab/Kaggle route) and the notebooks' setup cell built by tools/setup_cell.py.

The slow test runs the script twice in a clean virtual environment against this repository, offline: the first run
clones, installs (pip --no-deps, with the build tools of the course's environment) and fetches the weights from the
local cache; the second run must do nothing.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from course_utils.cache_layout import cache_dir
from course_utils.paths import NOTEBOOKS_DIR, REPO_ROOT

TOOLS = REPO_ROOT / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cloud_setup = _load("cloud_setup")
setup_cell = _load("setup_cell")


def test_versions_and_the_course_torch_range():
    assert cloud_setup.version_tuple("2.14.1+cu126") == (2, 14, 1) and cloud_setup.version_tuple("2.14.0") == (2, 14)
    assert cloud_setup.satisfies("2.14.1+cu126", ">=2.13,<=2.14.1")
    assert not cloud_setup.satisfies("2.15.0", ">=2.13,<=2.14.1") and not cloud_setup.satisfies("2.12", ">=2.13")
    assert cloud_setup.satisfies("3.11.7", ">=3.11")
    with pytest.raises(ValueError, match="unsupported version clause"):
        cloud_setup.satisfies("2.14", "~=2.14")
    with pytest.raises(TypeError, match="version must be a string"):
        cloud_setup.version_tuple(2.14)
    project = cloud_setup.project_metadata(REPO_ROOT)
    torch_spec = cloud_setup.torch_range(project)
    assert f"torch{torch_spec}" in [dep.replace(" ", "") for dep in project["dependencies"]]


def test_does_nothing_where_the_course_is_installed(tmp_path, capsys):
    assert cloud_setup.setup(repository="/nonexistent", dest=tmp_path / "clone") == "nothing"
    assert "nothing to do" in capsys.readouterr().out and not (tmp_path / "clone").exists()


def test_refuses_clearly_while_the_repository_is_unset(tmp_path, monkeypatch):
    monkeypatch.setattr(cloud_setup.importlib.util, "find_spec", lambda name: None)  # as on a fresh cloud notebook
    monkeypatch.setattr(cloud_setup, "COURSE_REPOSITORY", "")
    with pytest.raises(cloud_setup.SetupError, match="COURSE_REPOSITORY is not set"):
        cloud_setup.setup(dest=tmp_path / "clone")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not the course")
    with pytest.raises(cloud_setup.SetupError, match="is not a clone of the course"):
        cloud_setup.setup(repository=str(REPO_ROOT), dest=tmp_path / "other")
    assert cloud_setup.main(["--dest", str(tmp_path / "clone")]) == 1  # a clear message, no traceback


def test_repository_address_is_kept_in_one_place():
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        urls = tomllib.load(file)["project"].get("urls", {})
    if "Repository" in urls or cloud_setup.COURSE_REPOSITORY:
        assert urls.get("Repository") == cloud_setup.COURSE_REPOSITORY, "pyproject [project.urls] != cloud_setup"
    source = setup_cell.cell_source(cloud_setup.COURSE_REPOSITORY)
    compile(source, "setup cell", "exec")
    for notebook in sorted(NOTEBOOKS_DIR.rglob("*.ipynb")):  # every lesson and solution starts with it
        cells = json.loads(notebook.read_text())["cells"]
        found = ["".join(c["source"]) for c in cells if "".join(c["source"]).startswith(setup_cell.MARKER)]
        assert found == [source], f"{notebook.name}: no setup cell, or not `python tools/setup_cell.py`'s: run --write"
        assert cells[0]["cell_type"] == "markdown" and "".join(cells[1]["source"]) == source, notebook.name


def _cloud_like_venv(tmp_path: Path) -> tuple[Path, dict]:
    """A clean venv that sees this environment's packages (torch, pip, setuptools...) but not course_utils, offline."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # like a cloud notebook with torch preinstalled: the course environment's packages are visible through links in
    # one folder, all but course_utils itself (so pip never sees, let alone touches, the course environment's install)
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("course_utils", "__editable__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    Path(site, "course-deps.pth").write_text(f"{deps}\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_NO_INDEX"] = "1"  # offline: nothing may come from a package index
    probe = [str(python), "-c", "import importlib.util as u; print(u.find_spec('course_utils') is not None)"]
    assert subprocess.run(probe, env=env, capture_output=True, text=True, cwd=tmp_path).stdout.strip() == "False"
    return python, env


def _imported_from(python: Path, env: dict, cwd: Path) -> Path:
    where = subprocess.run([str(python), "-c", "import course_utils; print(course_utils.__file__)"], env=env,
                           capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()
    return Path(where)


@pytest.mark.slow
def test_clean_environment_set_up_then_left_alone(tmp_path):
    python, env = _cloud_like_venv(tmp_path)
    command = [str(python), str(TOOLS / "cloud_setup.py"), "--repository", str(REPO_ROOT), "--dest",
               str(tmp_path / "clone"), "--pip-arg=--no-deps", "--pip-arg=--no-build-isolation"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "keeping the preinstalled torch" in first.stdout and "course weights ready" in first.stdout
    assert _imported_from(python, env, tmp_path).is_relative_to(tmp_path / "clone")

    second = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert second.returncode == 0 and "nothing to do" in second.stdout, second.stdout + second.stderr
    assert "cloning" not in second.stdout and "installing" not in second.stdout


def _zip_of_this_checkout(target: Path) -> None:
    """What a learner uploads: the course's files (tracked and new, not ignored) under one top folder, as a .zip."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    with zipfile.ZipFile(target, "w") as archive:
        for name in filter(None, listed):
            if (REPO_ROOT / name).is_file():
                archive.write(REPO_ROOT / name, f"llm-course-main/{name}")


@pytest.mark.slow
def test_setup_cell_installs_an_uploaded_zip_then_does_nothing(tmp_path):
    """The notebooks' cell, run as on Colab before the course is published: a .zip uploaded next to the notebook."""
    python, env = _cloud_like_venv(tmp_path)
    home, work = tmp_path / "home", tmp_path / "content"
    home.mkdir(), work.mkdir()
    _zip_of_this_checkout(work / "llm-course-main.zip")
    env.update(HOME=str(home), PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0",  # offline pip, as in the test above
               COURSE_CACHE=str(cache_dir()))  # the weights come from this machine's cache, not from the network
    cell = setup_cell.cell_source("")
    first = subprocess.run([str(python), "-c", cell], env=env, capture_output=True, text=True, cwd=work, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "keeping the preinstalled torch" in first.stdout and "course weights ready" in first.stdout
    assert _imported_from(python, env, work).is_relative_to(home / "llm-course")

    second = subprocess.run([str(python), "-c", cell], env=env, capture_output=True, text=True, cwd=work, timeout=120)
    assert second.returncode == 0 and second.stdout == "" and second.stderr == "", second.stdout + second.stderr


def test_setup_cell_says_what_to_do_without_a_copy_of_the_course(tmp_path):
    python, env = _cloud_like_venv(tmp_path)
    env["HOME"] = str(tmp_path / "home")
    cell = setup_cell.cell_source("")
    result = subprocess.run([str(python), "-c", cell], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "upload its .zip first" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "home" / "llm-course").exists()


def test_write_into_inserts_then_keeps_then_updates(tmp_path):
    notebook = tmp_path / "lesson.ipynb"
    cells = [{"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# Lesson"]},
             {"cell_type": "code", "execution_count": None, "id": "code", "metadata": {}, "outputs": [], "source": []}]
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert setup_cell.write_into(notebook, setup_cell.cell_source("")) == "inserted"
    assert setup_cell.write_into(notebook, setup_cell.cell_source("")) == "unchanged"
    assert setup_cell.write_into(notebook, setup_cell.cell_source("https://example.org/course.git")) == "updated"
    written = json.loads(notebook.read_text())["cells"]
    assert [c["id"] for c in written][::2] == ["title", "code"] and len(written) == 3
    assert "".join(written[1]["source"]) == setup_cell.cell_source("https://example.org/course.git")
    notebook.write_text(json.dumps({"cells": cells[1:], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ValueError, match="must be the title"):
        setup_cell.write_into(notebook, setup_cell.cell_source(""))
