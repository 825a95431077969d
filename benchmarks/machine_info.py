"""The CPU model a benchmark ran on, and the file-name slug that keeps each machine's results apart."""
from __future__ import annotations

import platform
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what platform reports)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def results_path(name: str) -> Path:
    """``results/<name>-<cpu slug>.json``: one file per benchmark and CPU model, never another machine's."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")
    return RESULTS / f"{name}-{slug}.json"
