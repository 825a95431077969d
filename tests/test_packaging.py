"""environment.yml lists what pyproject.toml lists; the Makefile installs the CPU torch wheel."""
import re
import tomllib

import yaml

from course_utils.paths import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip_section if not r.startswith("-e")}
    assert wanted == listed, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    assert "-e ." in pip_section


def test_torch_pin_is_the_same_everywhere():
    makefile = (REPO_ROOT / "Makefile").read_text()
    env = (REPO_ROOT / "environment.yml").read_text()
    pin = re.search(r"TORCH_SPEC \?= (torch==[\d.]+)", makefile).group(1)
    assert f"- {pin}" in env


def test_pre_commit_strips_notebooks_like_make_run():
    makefile = (REPO_ROOT / "Makefile").read_text()
    flags = re.search(r"NBSTRIPOUT_FLAGS := (.+?)\n\n", makefile, re.S).group(1).replace("\\\n\t", "")
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    entry = next(h["entry"] for h in hooks if h["id"] == "nbstripout")
    assert entry.split(" ", 1)[1] == " ".join(flags.split())
    assert "metadata.widgets" in entry and "cell.metadata.papermill" in entry
