"""The wheel is complete: built, installed into a scratch venv and imported from outside the repository.

The scratch venv borrows the course venv's third-party packages through a path file (so nothing is downloaded), but
not its editable install of course_utils: the imported package must be the one from the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from course_utils.paths import REPO_ROOT

pytestmark = pytest.mark.slow

PROBE = r"""
import importlib, json, os, sys
import course_utils
modules = json.loads(sys.argv[1])
for name in modules:
    importlib.import_module(name)
from course_utils import paths
try:
    paths.DATA_DIR
    data_error = None
except FileNotFoundError as error:
    data_error = str(error)
os.environ["COURSE_DATA"] = sys.argv[2]
from course_utils.prompt_tasks import load_tasks
print(json.dumps({"file": course_utils.__file__, "data_error": data_error, "tasks": sorted(load_tasks())}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a fresh copy of the sources: setuptools would otherwise reuse an old build/ folder
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "course_utils", source / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(source)], check=True, capture_output=True, text=True)
    (found,) = out.glob("course_utils-*.whl")
    return found


def test_wheel_holds_every_module_of_the_package(wheel: Path):
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("course_utils/") and n.endswith(".py")}
    in_repo = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "course_utils").rglob("*.py")}
    assert in_wheel == in_repo, f"missing from the wheel: {sorted(in_repo - in_wheel)}"


def test_installed_wheel_imports_from_outside_the_repository(wheel: Path, tmp_path: Path):
    scratch = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(scratch)
    python = scratch / "bin" / "python"
    scratch_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                       check=True, capture_output=True, text=True).stdout.strip())
    # third-party packages from the course venv, read through a path file: its .pth files (the editable finder
    # among them) are not processed this way
    (scratch_site / "course_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(scratch_site), str(wheel)], check=True, capture_output=True, text=True)
    modules = sorted(p.relative_to(REPO_ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
                     for p in (REPO_ROOT / "course_utils").rglob("*.py") if p.name != "__main__.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COURSE_DATA")}
    result = subprocess.run([str(python), "-c", PROBE, json.dumps(modules), str(REPO_ROOT / "data")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(scratch), report["file"]
    assert "COURSE_DATA" in report["data_error"] and "pip install -e ." in report["data_error"]
    assert report["tasks"] == ["arithmetic", "dates", "topic"]
