"""The converted cache: a float32 safetensors copy of each GGUF, checked by digest at every load.

Layout: ``<cache>/converted/<gguf stem>-<hash of its path>/`` holds ``model.safetensors``, ``tokenizer.json`` and,
written last, ``meta.json`` (config, chat template, the source file's size and mtime, and each file's size, CRC-32 and
SHA-256). A load checks sizes and CRC-32s (fast: ~0.2 s for 513 MiB, against ~0.7 s for SHA-256); ``python -m
course_utils cache verify`` checks the SHA-256s. A damaged, truncated or outdated entry is rebuilt from the GGUF and
replaced in one rename. The copy is only an optimisation: if the cache cannot be written, loading goes on in memory.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import warnings
import zlib
from pathlib import Path

from .cache_layout import TEMP_PREFIX, cache_dir, make_readable, staging_dir
from .checkpoint import Checkpoint
from .config import ModelConfig
from .tokenizer import ChatTemplate

CONVERTED_FORMAT = 3  # 2: digests in meta.json, entries keyed by the source path only; 3: the config's display_name
ENTRY_FILES = ("model.safetensors", "tokenizer.json")
_warned: set[str] = set()
_checked: set[tuple] = set()  # files whose digest matched in this process, with the stat that proves them unchanged


def converted_root() -> Path:
    """The folder holding one converted entry per GGUF file."""
    return cache_dir() / "converted"


def entry_dir(source: Path) -> Path:
    """The converted entry of a GGUF file (one per path: a re-fetched or edited file replaces its entry)."""
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return converted_root() / f"{source.stem}-{key}"


def _stamp(source: Path) -> dict:
    stat = source.stat()
    return {"path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_digest(path: Path, strong: bool = False) -> dict:
    """Size and CRC-32 of a file (and SHA-256 when ``strong``), read through a memory map (no copy)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:  # mmap refuses empty files
            return {"size": 0, "crc32": 0, **({"sha256": hashlib.sha256().hexdigest()} if strong else {})}
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            digest = {"size": size, "crc32": zlib.crc32(data)}
            if strong:
                digest["sha256"] = hashlib.sha256(data).hexdigest()
    return digest


def _meta_checksum(meta: dict) -> int:
    body = {k: v for k, v in meta.items() if k != "meta_crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True).encode())


def check_entry(directory: Path, source: Path | None = None, strong: bool = False) -> tuple[dict | None, str]:
    """(meta, "") when the entry is whole; (None, reason) when it is missing, damaged or made from another file."""
    if not (directory / "meta.json").exists():
        return None, "missing"
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"meta.json is unreadable ({type(error).__name__})"
    if isinstance(meta, dict) and meta.get("format") != CONVERTED_FORMAT:
        return None, f"made by an older course version (format {meta.get('format')})"
    if not isinstance(meta, dict) or meta.get("meta_crc32") != _meta_checksum(meta):
        return None, "meta.json is damaged"
    if source is not None and meta.get("source") != _stamp(source):
        return None, f"{source} changed since the copy was made"
    for name in ENTRY_FILES:
        path, expected = directory / name, (meta.get("files") or {}).get(name)
        if not isinstance(expected, dict) or not {"size", "crc32"} <= expected.keys():
            return None, f"meta.json records no digest for {name}"
        if not path.exists():
            return None, f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return None, f"{name} has {path.stat().st_size:,} bytes, expected {expected['size']:,} (truncated?)"
        stat = path.stat()
        seen = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, expected["crc32"])
        if seen in _checked and not strong:  # checked in this process and untouched since (ctime cannot be reset)
            continue
        digest = file_digest(path, strong)
        if digest["crc32"] != expected["crc32"] or (strong and digest["sha256"] != expected["sha256"]):
            return None, f"{name} fails its {'SHA-256' if strong else 'CRC-32'} check (damaged)"
        _checked.add(seen)
    return meta, ""


def load_entry(source: Path) -> tuple[Checkpoint | None, str]:
    """The checkpoint from the converted entry of ``source`` after its digest check, else (None, why not)."""
    from safetensors.torch import load_file

    directory = entry_dir(source)
    meta, problem = check_entry(directory, source)
    if meta is None:
        return None, problem
    try:
        state = load_file(str(directory / "model.safetensors"))
        tokenizer_json = (directory / "tokenizer.json").read_text()
        config = ModelConfig(**meta["config"])
    except Exception as error:  # passed its digest but still unreadable: treat as damaged, rebuild
        return None, f"unreadable ({type(error).__name__}: {error})"
    template = ChatTemplate(meta["chat_template"], str(source)) if meta["chat_template"] else None
    return Checkpoint(config, state, tokenizer_json, template, source_verified=bool(meta["verified"])), ""


def warn_once(key: str, message: str) -> None:
    """``warnings.warn(message)`` the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def save_entry(checkpoint: Checkpoint, source: Path) -> bool:
    """Store ``checkpoint`` as the entry of ``source``; False (with a warning) when the cache cannot be written."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    directory = entry_dir(source)
    stage = trash = None
    try:
        stage = staging_dir(directory.parent)
        save_file({k: v.contiguous() for k, v in checkpoint.state_dict.items()}, str(stage / "model.safetensors"))
        (stage / "tokenizer.json").write_text(checkpoint.tokenizer_json)
        meta = {"format": CONVERTED_FORMAT, "source": _stamp(source), "verified": checkpoint.source_verified,
                "config": checkpoint.config.to_dict(),
                "chat_template": str(checkpoint.chat_template) if checkpoint.chat_template else None,
                "files": {name: file_digest(stage / name, strong=True) for name in ENTRY_FILES}}
        meta["meta_crc32"] = _meta_checksum(meta)
        (stage / "meta.json").write_text(json.dumps(meta))  # written last: its presence marks a complete entry
        make_readable(stage)
        if directory.exists():  # a damaged or outdated entry: move it aside, then put the new one in its place
            trash = Path(str(stage) + "-old")
            os.replace(directory, trash)
        os.replace(stage, directory)
        stage = None
        _drop_outdated_siblings(directory)
        return True
    except (OSError, SafetensorError) as error:  # read-only, another user's, full disk: the copy is optional
        warn_once(str(directory), f"could not write the converted copy of {source} to {directory} "
                                  f"({type(error).__name__}: {error}); continuing in memory, so every load converts "
                                  f"again (~7 s). Fix: make that folder writable or set COURSE_CACHE to a folder you "
                                  f"own")
        return False
    finally:
        for leftover in (stage, trash):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)


def _drop_outdated_siblings(directory: Path) -> None:
    """Remove entries of the same file name made by an older course version (they are keyed differently)."""
    stem = directory.name.rsplit("-", 1)[0]
    for sibling in directory.parent.iterdir():
        if sibling.name.rsplit("-", 1)[0] == stem and sibling != directory and sibling.is_dir() \
                and not sibling.name.startswith(TEMP_PREFIX):
            try:
                old_format = json.loads((sibling / "meta.json").read_text()).get("format")
            except (OSError, ValueError, AttributeError):
                continue  # unreadable: leave it to `cache list` / `cache clean`
            if old_format is None or (isinstance(old_format, int) and old_format < CONVERTED_FORMAT):
                shutil.rmtree(sibling, ignore_errors=True)


def drop_entries_for(source: Path) -> None:
    """Remove the converted entry of ``source`` (after a re-fetch replaced it); errors are ignored."""
    try:
        shutil.rmtree(entry_dir(source), ignore_errors=True)
    except (OSError, ValueError):
        pass
