"""Committed notebook outputs that nbval compares must be the same on every machine.

A cell tagged ``nbval-check-output`` may print bounds, verdicts and numbers rounded well above their noise, but not
float noise itself: ``4.4e-16`` on one CPU is ``8.9e-16`` on the next, and a newcomer's ``make test`` would fail on
outputs that were right where they were made.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_utils.paths import NOTEBOOKS_DIR

# A number in scientific notation (mantissa, exponent), and a plain decimal number (not an arXiv identifier).
SCIENTIFIC = re.compile(r"(?<![\w.])[-+]?(\d+(?:\.\d*)?)[eE]([-+]?\d+)\b")
DECIMAL = re.compile(r"(?<![\w.])(?<!arXiv:)(\d+\.\d+)(?![\d.]*[eE][-+]?\d)")
# float32 carries about 7 significant digits; a computed float32 value is only trustworthy well below that.
MAX_SIGNIFICANT_DIGITS = 6
NOISE_FLOOR = 1e-3


def checked_outputs(notebook: dict) -> list[tuple[int, str]]:
    """(code-cell index, printed text) of every code cell tagged nbval-check-output."""
    found = []
    code_cells = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    for index, cell in enumerate(code_cells):
        if "nbval-check-output" not in cell.get("metadata", {}).get("tags", []):
            continue
        texts = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append("".join(output.get("text", "")))
            else:
                texts.append("".join(output.get("data", {}).get("text/plain", "")))
        found.append((index, "".join(texts)))
    return found


def noisy_numbers(text: str) -> list[str]:
    """Numbers in ``text`` that look like float noise: scientific notation below 1e-3 (a bare power of ten such as
    ``1e-05`` is a configured constant and allowed), or decimals with more than six significant digits."""
    bad = []
    for match in SCIENTIFIC.finditer(text):
        mantissa, exponent = match.group(1), int(match.group(2))
        value = float(mantissa) * 10.0 ** exponent
        bare_power_of_ten = mantissa == "1"
        if abs(value) < NOISE_FLOOR and not bare_power_of_ten:
            bad.append(match.group(0))
    for match in DECIMAL.finditer(text):
        digits = match.group(1).replace(".", "").lstrip("0")
        if len(digits) > MAX_SIGNIFICANT_DIGITS:
            bad.append(match.group(0))
    return bad


def scan_notebook(notebook: dict) -> list[str]:
    """One line per noisy number printed by a check-output cell."""
    return [f"code cell {index}: prints {number!r}"
            for index, text in checked_outputs(notebook) for number in noisy_numbers(text)]


NOTEBOOKS = sorted(NOTEBOOKS_DIR.rglob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_checked_outputs_hold_no_float_noise(path: Path):
    problems = scan_notebook(json.loads(path.read_text()))
    assert not problems, f"{path.name}: nbval-checked output differs between machines: {problems}; " \
                         "print a bound or a verdict instead (and the noise itself in an untagged cell)"


def _notebook_with(output: str, tags: list[str]) -> dict:
    cell = {"cell_type": "code", "metadata": {"tags": tags}, "source": [],
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}
    return {"cells": [{"cell_type": "markdown", "source": []}, cell]}


@pytest.mark.parametrize("output", [
    "max |Attn(PX) - P Attn(X)| = 4.4e-16\n",
    "largest difference: 5.3e-07",
    "max difference 0.0e+00",
    "error -2.9E-06 here",
    "norm 8.370512 exactly",
])
def test_scan_catches_planted_noise(output: str):
    assert scan_notebook(_notebook_with(output, ["nbval-check-output"])) != []


@pytest.mark.parametrize("output", [
    "max |Attn(PX) - P Attn(X)| < 1e-12: equal up to float64 rounding",
    "RMSNorm epsilon 1e-05",
    "p = 0.721, entropy 2.06 bits, 85.9%",
    "134,515,008 parameters, 6.28 positions per turn, |q| = 8.3705",
    "learning rate 3.0e-03",
    "Holtzman et al. (arXiv:1904.09751), Table 1",
])
def test_scan_accepts_stable_outputs(output: str):
    assert scan_notebook(_notebook_with(output, ["nbval-check-output"])) == []


def test_scan_ignores_cells_nbval_does_not_check():
    assert scan_notebook(_notebook_with("on this machine: 4.4e-16", ["nbval-ignore-output"])) == []
