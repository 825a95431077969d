"""Find the weights to load (explicit path > COURSE_MODEL > fetched course file) and read them, GGUF via the cache."""
from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import Checkpoint
from .fetch import FETCH_HINT, GGUF_NAME, default_weights_path, verify_course_weights
from .gguf_reader import read_gguf
from .hf_dir import read_hf_dir
from .weights_cache import _converted_dir, _load_converted, _save_converted


def locate_weights(path: str | os.PathLike | None = None) -> Path:
    """Weights to load: explicit ``path`` > env ``COURSE_MODEL`` > the course GGUF in the cache."""
    chosen = path if path is not None else os.environ.get("COURSE_MODEL") or None
    if chosen is None:
        default = default_weights_path()
        if not default.exists():
            raise FileNotFoundError(f"model weights not found at {default}; {FETCH_HINT}")
        return default
    chosen = Path(chosen).expanduser()
    if not chosen.exists():
        raise FileNotFoundError(f"model weights not found at {chosen} (a .gguf file or a Hugging Face directory "
                                f"with config.json and *.safetensors); for the course model {FETCH_HINT}")
    return chosen



def load_checkpoint(path: str | os.PathLike | None = None, use_cache: bool = True) -> Checkpoint:
    """Locate and read weights; a GGUF file is dequantised once and then served from the converted cache."""
    source = locate_weights(path)
    if source.is_dir():
        return read_hf_dir(source)
    converted = _converted_dir(source)
    if use_cache and (converted / "meta.json").exists():
        try:
            return _load_converted(converted)
        except Exception:  # a damaged cache entry is rebuilt from the GGUF, never trusted
            pass
    if source.name == GGUF_NAME:  # the course file: never dequantise a damaged copy
        verify_course_weights(source)
    checkpoint = read_gguf(source)
    if use_cache:
        _save_converted(checkpoint, converted)
    return checkpoint


