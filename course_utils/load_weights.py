"""Find the weights to load (explicit path > COURSE_MODEL > fetched course file) and read them, GGUF via the cache."""
from __future__ import annotations

import os
from pathlib import Path

from .cache_layout import default_weights_path, sweep_stale_temporaries
from .checkpoint import Checkpoint
from .fetch import FETCH_HINT, is_course_candidate, verify_course_weights
from .gguf_reader import read_gguf
from .hf_dir import read_hf_dir
from .weights_cache import load_entry, save_entry, warn_once

KINDS = "a .gguf file or a Hugging Face directory with config.json and *.safetensors"


def locate_weights(path: str | os.PathLike | None = None) -> Path:
    """Weights to load: explicit ``path`` > env ``COURSE_MODEL`` > the course GGUF in the cache."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike ({KINDS}), got {type(path).__name__}")
    chosen = path if path is not None else os.environ.get("COURSE_MODEL") or None
    if chosen is None:
        default = default_weights_path()
        if not default.exists():
            raise FileNotFoundError(f"model weights not found at {default}; {FETCH_HINT}")
        return default
    chosen = Path(chosen).expanduser()
    if not chosen.exists():
        raise FileNotFoundError(f"model weights not found at {chosen} ({KINDS}); for the course model {FETCH_HINT}")
    if chosen.is_dir() and chosen.suffix.lower() == ".gguf":
        raise ValueError(f"{chosen} is a folder, but its name ends in .gguf; give the path of the .gguf file itself "
                         f"(e.g. {chosen / chosen.name} if it is inside), or for the course model {FETCH_HINT}")
    return chosen


def load_checkpoint(path: str | os.PathLike | None = None, use_cache: bool = True) -> Checkpoint:
    """Locate and read weights; a GGUF file is dequantised once and then served from the digest-checked cache.

    A GGUF that claims to be the course file (by name, size or ``general.name``) is verified by SHA-256 before it is
    dequantised; any other GGUF loads with a one-time "unverified" warning.
    """
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {type(use_cache).__name__}")
    source = locate_weights(path)
    if source.is_dir():
        return read_hf_dir(source)
    sweep_stale_temporaries()
    checkpoint = None
    if use_cache:
        checkpoint, problem = load_entry(source)
        if checkpoint is None and problem != "missing":
            warn_once(f"rebuild:{source}", f"the converted copy of {source} is unusable ({problem}); rebuilding it "
                                            f"from the GGUF")
    if checkpoint is None:
        verified = is_course_candidate(source)
        if verified:  # the course file under any name: never dequantise a damaged copy
            verify_course_weights(source)
        checkpoint = read_gguf(source, verified=verified)
        if use_cache:
            save_entry(checkpoint, source)
    if not checkpoint.source_verified:
        warn_once(f"unverified:{source.resolve()}", f"{source} is not the course model, so it is loaded unverified "
                                                    f"(no checksum is known for it); use files you trust")
    return checkpoint
