"""Every curriculum point is taught somewhere, each notebook says what it covers, and the README map agrees."""
import json
import re

import pytest

from course_utils.paths import NOTEBOOKS_DIR, REPO_ROOT

CURRICULUM_IDS = {f"G{i}" for i in range(1, 7)} | {f"P{i}" for i in range(1, 7)} | \
                 {f"E{i}" for i in range(1, 7)} | {f"F{i}" for i in range(1, 6)}
ID_PATTERN = re.compile(r"\b([GPEF]\d)\b")


def _lessons():
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def _declared_ids(notebook) -> set[str]:
    first = json.loads(notebook.read_text())["cells"][0]
    text = "".join(first["source"])
    match = re.search(r"\*\*Curriculum:\*\*([^\n]*)", text)
    assert first["cell_type"] == "markdown" and match, f"{notebook.name}: opening cell lacks a '**Curriculum:**' line"
    return set(ID_PATTERN.findall(match.group(1)))


def test_curriculum_ids_match_the_shared_curriculum():
    shared = REPO_ROOT.parent / "shared" / "CURRICULUM.md"
    if not shared.exists():
        pytest.skip(f"{shared} not present (it lives beside the repository on course machines)")
    assert set(re.findall(r"^- ([GPEF]\d) ", shared.read_text(), re.M)) == CURRICULUM_IDS


def test_every_curriculum_point_is_covered():
    covered = set().union(*(_declared_ids(nb) for nb in _lessons()))
    assert CURRICULUM_IDS <= covered, f"not taught yet: {sorted(CURRICULUM_IDS - covered)}"


@pytest.mark.parametrize("notebook", _lessons(), ids=lambda p: p.name)
def test_opening_cell_declares_ids_and_runtime(notebook):
    ids = _declared_ids(notebook)
    assert ids <= CURRICULUM_IDS, f"unknown IDs {ids - CURRICULUM_IDS}"
    first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    assert "**Runtime:**" in first


def _readme_lesson_map() -> dict[str, set[str]]:
    """Notebook name -> curriculum IDs, from the README table whose header has a 'Curriculum' column."""
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("|") and "Curriculum" in line)
    column = [cell.strip() for cell in header.split("|")].index("Curriculum")
    rows = {}
    for line in lines:
        name = re.search(r"\[(\d\d_\w+\.ipynb)\]", line)
        if line.startswith("|") and name:
            rows[name.group(1)] = set(ID_PATTERN.findall(line.split("|")[column]))
    return rows


def test_readme_lesson_map_agrees_with_notebooks():
    rows = _readme_lesson_map()
    lessons = {nb.name: _declared_ids(nb) for nb in _lessons()}
    assert rows.keys() == lessons.keys(), "README lesson map and notebooks/ list different lessons"
    for name, ids in lessons.items():
        assert rows[name] == ids, f"{name}: README says {sorted(rows[name])}, notebook says {sorted(ids)}"
