"""The CPU a benchmark ran on, and the file-name slug that keeps each machine's results apart.

The model name alone does not tell machines apart: cloud CPUs often report a generic "Intel(R) Xeon(R) Processor"
for quite different chips (one such machine here had a 480 MiB L3 cache and AMX, another decoded at half its speed).
The slug therefore adds the last-level cache size and the widest vector extension when the system reports them.
"""
from __future__ import annotations

import platform
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
_VECTOR_EXTENSIONS = ("amx_bf16", "avx512f", "avx2")  # widest first: the first one present names the machine


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what platform reports)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def last_level_cache() -> str | None:
    """Size of the highest cache level shared by the cores, e.g. "480MiB" (Linux sysfs), or None if unknown."""
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"))
    sized = [(int((c / "level").read_text()), (c / "size").read_text().strip()) for c in caches
             if (c / "level").exists() and (c / "size").exists()]
    if not sized:
        return None
    size = max(sized)[1]  # e.g. "491520K"
    match = re.fullmatch(r"(\d+)K", size)
    return f"{int(match.group(1)) // 1024}MiB" if match and int(match.group(1)) % 1024 == 0 else size


def vector_extension() -> str | None:
    """The widest of AMX, AVX-512 and AVX2 the CPU reports (Linux /proc/cpuinfo flags), or None."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    match = re.search(r"^flags\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
    flags = set(match.group(1).split()) if match else set()
    return next((name for name in _VECTOR_EXTENSIONS if name in flags), None)


def machine_facts() -> dict:
    """What the results files record about the CPU: model, last-level cache, widest vector extension."""
    return {"cpu": cpu_model(), "last_level_cache": last_level_cache(), "vector_extension": vector_extension()}


def results_path(name: str) -> Path:
    """``results/<name>-<cpu slug>.json``: one file per benchmark and machine, never another machine's.

    Files written before the cache size and vector extension joined the slug are named by the model alone.
    """
    parts = [cpu_model(), last_level_cache() or "", vector_extension() or ""]
    slug = re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-")
    return RESULTS / f"{name}-{slug}.json"
