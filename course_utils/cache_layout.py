"""Where the course cache lives, how its temporary folders are named, and sweeping the ones a killed run left behind.

Every write into the cache is staged in a hidden folder named ``.tmp-<pid>-<random>`` beside its target and renamed
into place in one step. A staging folder whose process is gone, or that is older than ``STALE_AFTER_S``, is debris of
a killed fetch or conversion: ``sweep_stale_temporaries()`` removes it (run by every fetch and load).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

TEMP_PREFIX = ".tmp-"
STALE_AFTER_S = 3600.0  # a staging folder older than this is debris even if its process id was reused
DIR_MODE, FILE_MODE = 0o755, 0o644  # cache entries are readable by other users (a teacher's shared install)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """The course's cache folder: env ``COURSE_CACHE``, else ``$XDG_CACHE_HOME/llm-course`` (default ~/.cache).

    Raises ValueError if that path exists but is not a folder.
    """
    if os.environ.get("COURSE_CACHE"):
        path = Path(os.environ["COURSE_CACHE"]).expanduser()
        origin = "COURSE_CACHE"
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-course"
        origin = "the default cache location"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{origin} is {path}, which is a file, not a folder; point COURSE_CACHE at a folder "
                         f"(e.g. `export COURSE_CACHE=~/.cache/llm-course`) or move that file away")
    return path


def default_weights_path() -> Path:
    """Path of the course GGUF inside the cache (it may not exist yet)."""
    return cache_dir() / GGUF_NAME


def staging_dir(parent: Path) -> Path:
    """A fresh hidden staging folder inside ``parent`` (created, mode 0o755), named after this process."""
    created = [folder for folder in (parent, *parent.parents) if not folder.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    for folder in created:  # folders this call made get the cache's mode too, whatever the umask
        folder.chmod(DIR_MODE)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
    path.chmod(DIR_MODE)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """True for a staging folder whose process is gone or that is older than ``STALE_AFTER_S``."""
    if not path.name.startswith(TEMP_PREFIX):
        return False
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    pid_text = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit() or age > STALE_AFTER_S:
        return True
    return int(pid_text) != os.getpid() and not _pid_alive(int(pid_text))


def temporaries(root: Path | None = None) -> list[Path]:
    """Every staging folder in the cache root and its ``converted`` folder (stale or not)."""
    root = cache_dir() if root is None else root
    found = []
    for folder in (root, root / "converted"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX))
    return found


def sweep_stale_temporaries(root: Path | None = None) -> list[Path]:
    """Remove staging folders left by killed runs; returns what was removed. Errors (read-only cache) are ignored."""
    removed = []
    try:
        found = temporaries(root)
    except OSError:  # an unreadable cache (another user's): nothing to sweep from here
        return removed
    for path in found:
        if is_stale(path):
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def make_readable(path: Path) -> None:
    """Give a staged file or folder tree the cache's modes (0o644 files, 0o755 folders), whatever the umask."""
    if path.is_dir():
        path.chmod(DIR_MODE)
        for child in path.rglob("*"):
            child.chmod(DIR_MODE if child.is_dir() else FILE_MODE)
    else:
        path.chmod(FILE_MODE)
