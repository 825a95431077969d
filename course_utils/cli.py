"""Command line of the course: ``python -m course_utils fetch`` (what ``make setup`` runs) and ``... cache``.

``cache list`` shows every entry of the cache with its size and state, ``cache verify`` checks the course GGUF and
each converted copy by SHA-256, ``cache clean`` removes damaged, orphaned and outdated copies and leftovers of killed
runs (``--all``: everything, the fetched GGUF included). In the spirit of ``huggingface-cli scan-cache``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .cache_layout import GGUF_NAME, cache_dir, is_stale, temporaries
from .fetch import GGUF_SHA256, GGUF_SIZE, fetch_weights, sha256_of
from .load_weights import load_checkpoint
from .weights_cache import check_entry


@dataclass
class CacheItem:
    """One thing in the cache folder, what it is, its size and whether it is usable."""

    path: Path
    kind: str  # "course GGUF", "converted", "temporary", "other"
    size: int
    state: str  # "ok", or why it is not (damaged / orphan / outdated / stale temporary / in use)

    @property
    def removable(self) -> bool:
        return self.state != "ok" and self.state != "in use" and self.kind != "other"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _entry_state(entry: Path, strong: bool) -> str:
    try:
        source = Path(json.loads((entry / "meta.json").read_text())["source"]["path"])
    except Exception:  # noqa: BLE001 -- any unreadable meta means the entry is damaged
        source = None
    if source is not None and not source.exists():
        return f"orphan: its GGUF {source} is gone"
    meta, problem = check_entry(entry, source, strong=strong)
    if meta is not None:
        return "ok"
    return f"outdated: {problem}" if "changed" in problem or "older" in problem else f"damaged: {problem}"


def scan_cache(root: Path | None = None, strong: bool = False) -> list[CacheItem]:
    """Every entry of the cache folder with its state; ``strong`` checks SHA-256s instead of sizes and CRC-32s."""
    root = cache_dir() if root is None else root
    items = []
    if not root.is_dir():
        return items
    for path in sorted(root.iterdir()):
        if path.name == GGUF_NAME:
            size = path.stat().st_size
            ok = size == GGUF_SIZE and (not strong or sha256_of(path) == GGUF_SHA256)
            items.append(CacheItem(path, "course GGUF", size, "ok" if ok else "damaged: fails its checksum"))
        elif path.name != "converted" and not path.name.startswith(".tmp-"):
            items.append(CacheItem(path, "other", _size(path), "not the course's; left alone"))
    if (root / "converted").is_dir():
        for entry in sorted((root / "converted").iterdir()):
            if not entry.name.startswith(".tmp-"):
                items.append(CacheItem(entry, "converted", _size(entry), _entry_state(entry, strong)))
    for temp in temporaries(root):
        items.append(CacheItem(temp, "temporary", _size(temp), "stale: left by a killed run" if is_stale(temp)
                               else "in use"))
    return items


def clean_cache(root: Path | None = None, everything: bool = False) -> list[CacheItem]:
    """Remove what ``scan_cache`` marks removable (``everything``: all items but live temporaries); returns them."""
    removed = []
    for item in scan_cache(root):
        if item.removable or (everything and item.state != "in use"):
            if item.path.is_dir():
                shutil.rmtree(item.path, ignore_errors=True)
            else:
                item.path.unlink(missing_ok=True)
            removed.append(item)
    return removed


def _print_items(items: list[CacheItem]) -> None:
    for item in items:
        print(f"{item.size / 2**20:9.1f} MiB  {item.kind:<11}  {item.state:<40}  {item.path}")
    print(f"{sum(i.size for i in items) / 2**20:9.1f} MiB in {len(items)} item(s) under {cache_dir()}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m course_utils``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m course_utils", description="Course weights and cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download, verify and convert the course model (what `make setup` runs)")
    cache = commands.add_parser("cache", help="list, verify or clean the course cache").add_subparsers(
        dest="action", required=True)
    cache.add_parser("list", help="entries with their sizes and states (fast checks)")
    cache.add_parser("verify", help="check every entry by SHA-256; exit status 1 if any is damaged")
    clean = cache.add_parser("clean", help="remove damaged, orphaned and outdated entries and stale temporaries")
    clean.add_argument("--all", action="store_true", help="remove everything, the fetched GGUF included")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "fetch":
        path = fetch_weights()
        load_checkpoint(path)  # build the fast converted copy now, so the first notebook starts quickly
        print(f"course weights ready: {path}")
        return 0
    if args.action in ("list", "verify"):
        items = scan_cache(strong=args.action == "verify")
        _print_items(items)
        bad = [i for i in items if i.state.startswith("damaged")]
        if bad:
            print(f"{len(bad)} damaged item(s): run `python -m course_utils cache clean`, then `make setup`")
        return 1 if bad and args.action == "verify" else 0
    removed = clean_cache(everything=args.all)
    _print_items(removed)
    print("removed the items above" if removed else "nothing to remove")
    return 0
