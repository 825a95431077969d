"""The converted cache: a float32 safetensors copy of each GGUF, so later loads take about a second."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .checkpoint import Checkpoint
from .fetch import cache_dir
from .model import ModelConfig

CONVERTED_FORMAT = 1  # bump when the converted cache layout changes


def _converted_dir(source: Path) -> Path:
    stat = source.stat()
    key = f"{CONVERTED_FORMAT}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / "converted" / f"{source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _save_converted(checkpoint: Checkpoint, directory: Path) -> None:
    """Store a checkpoint as float32 safetensors + JSON, written into a temp folder and renamed in one step."""
    from safetensors.torch import save_file

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        state = {k: v.contiguous() for k, v in checkpoint.state_dict.items()}
        save_file(state, str(staging / "model.safetensors"))
        (staging / "tokenizer.json").write_text(checkpoint.tokenizer_json)
        meta = {"config": checkpoint.config.to_dict(), "chat_template": checkpoint.chat_template}
        (staging / "meta.json").write_text(json.dumps(meta))
        os.replace(staging, directory)
    except OSError:
        # another process may have finished the same conversion first; that copy is as good as ours
        if not (directory / "meta.json").exists():
            raise
    finally:
        if staging.exists():
            for file in staging.iterdir():
                file.unlink()
            staging.rmdir()


def _load_converted(directory: Path) -> Checkpoint:
    from safetensors.torch import load_file

    meta = json.loads((directory / "meta.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    return Checkpoint(ModelConfig(**meta["config"]), state, (directory / "tokenizer.json").read_text(),
                      meta["chat_template"])


