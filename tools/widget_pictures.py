#!/usr/bin/env python3
"""Make static pictures of the widgets in use (docs/explorer.png, docs/rope_widget.png) for readers without a kernel.

Serves a temporary copy of demo/ with Voila on 127.0.0.1 (the [demo] extra), opens each page in Debian's headless
chromium (playwright, as the browser tests do), uses the widget like a learner (the explorer generates 20 tokens; the
RoPE widget moves the query position), and saves a screenshot of the widget alone. Normal (not classroom) size, the
lesson's prompt, seed and settings, so the picture matches what lesson 03 / 06 show.

    .venv/bin/python tools/widget_pictures.py [--out docs] [--width 1280]

Not a test: it writes into the repository on purpose; re-run it when a widget's look changes and commit the PNGs.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PAGE_TIMEOUT_MS = 180_000
STEP_TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_voila(folder: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Voila serving ``folder`` on a free local port, in normal (not classroom) mode; returns (process, base URL)."""
    port = free_port()
    env = dict(os.environ, COURSE_CLASSROOM="0", TQDM_DISABLE="1", OMP_WAIT_POLICY="PASSIVE",
               JUPYTER_CONFIG_DIR=str(folder.parent / "config"), JUPYTER_RUNTIME_DIR=str(folder.parent / "runtime"))
    env.pop("MPLBACKEND", None)
    command = [sys.executable, "-m", "voila", str(folder), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
               "--Voila.port_retries=0"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Voila exited with code {process.returncode}; log: {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/", timeout=2):
                return process, base
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"Voila did not answer within 60 s; log: {log_path}")


def widget_screenshot(page, selector: str, path: Path, width: int) -> None:
    """Screenshot of one widget; the viewport is made as tall as the widget (pages scroll inside a container)."""
    widget = page.locator(selector).first
    page.set_viewport_size({"width": width, "height": round(widget.bounding_box()["height"]) + 200})
    page.wait_for_timeout(500)
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(path))


def explorer_picture(browser, base: str, path: Path, width: int) -> None:
    """The sampling explorer after "generate 20" with the lesson's settings."""
    root = ".sampling-explorer"
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{base}/voila/render/sampling_explorer.ipynb", timeout=PAGE_TIMEOUT_MS)
    page.locator(root).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.locator(f"{root} button.explorer-generate").first.click()
    page.wait_for_function("(sel) => document.querySelector(sel).disabled", arg=f"{root} button.explorer-generate",
                           timeout=STEP_TIMEOUT_MS)
    page.wait_for_function("(sel) => !document.querySelector(sel).disabled", arg=f"{root} button.explorer-generate",
                           timeout=STEP_TIMEOUT_MS)
    page.wait_for_timeout(1000)  # the final redraw's chart
    widget_screenshot(page, root, path, width)
    page.close()


def rope_picture(browser, base: str, path: Path, width: int) -> None:
    """The RoPE widget with the query at position 9 (m - n = 7)."""
    root = ".rope-explorer"
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{base}/voila/render/rope.ipynb", timeout=PAGE_TIMEOUT_MS)
    page.locator(root).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    handle = page.locator(f"{root} .rope-query .noUi-handle").first
    for _ in range(4):  # 5 -> 9, one arrow-key step at a time, each waiting for its new picture
        old = page.locator(f"{root} .rope-picture").first.get_attribute("src")
        handle.press("ArrowRight")
        page.wait_for_function("([sel, old]) => document.querySelector(sel).getAttribute('src') !== old",
                               arg=[f"{root} .rope-picture", old], timeout=STEP_TIMEOUT_MS)
    page.wait_for_timeout(500)
    widget_screenshot(page, root, path, width)
    page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs", help="folder for the PNGs (default: docs/)")
    parser.add_argument("--width", type=int, default=1280, help="browser width in CSS pixels (default: 1280)")
    args = parser.parse_args(argv)
    if args.width < 600:
        raise ValueError(f"--width must be at least 600 px, got {args.width}")
    if importlib.util.find_spec("voila") is None:
        print("needs Voila: pip install -e '.[demo]'", file=sys.stderr)
        return 1
    if not CHROMIUM.exists():
        print(f"needs chromium at {CHROMIUM} (sudo apt-get install chromium), or set COURSE_CHROMIUM", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "demo"
        shutil.copytree(REPO_ROOT / "demo", folder)
        process, base = start_voila(folder, Path(scratch) / "voila.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
                for make, name in ((explorer_picture, "explorer.png"), (rope_picture, "rope_widget.png")):
                    start = time.monotonic()
                    make(browser, base, args.out / name, args.width)
                    print(f"{args.out / name} ({time.monotonic() - start:.0f} s)")
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
