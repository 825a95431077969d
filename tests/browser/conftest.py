"""Fixtures for the browser test: a JupyterLab server on 127.0.0.1 (token auth) and Debian's headless chromium.

Without chromium the tests skip, unless COURSE_REQUIRE_BROWSER=1 (set by .ci/run), where they fail instead. The demo
test also needs Voila (the [demo] extra): it skips without it, unless COURSE_REQUIRE_DEMO=1.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
# Flags that let Debian's chromium run headless in a container without a GPU or network: no sandbox (root), no GPU,
# /tmp instead of a small /dev/shm, and no background connections that a closed network would refuse.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SERVER_START_TIMEOUT_S = 60


def _missing_browser(reason: str) -> None:
    message = (f"browser test needs {reason}. Install it with `sudo apt-get install chromium` (Debian/Ubuntu) and "
               f"`pip install -e '.[dev]'`, or point COURSE_CHROMIUM at a chromium binary.")
    if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"COURSE_REQUIRE_BROWSER=1 but the {message}")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium():
    """A headless chromium launched through playwright (skips or fails cleanly when it is missing)."""
    if not CHROMIUM.exists():
        _missing_browser(f"chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing_browser("the Python package playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


def start_jupyterlab(root: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start JupyterLab serving ``root`` on a free local port; return (process, base URL with token)."""
    port, token = _free_port(), secrets.token_hex(16)
    settings = root.parent / "jupyter-settings"
    env = dict(os.environ, COURSE_FAST="1", TQDM_DISABLE="1", JUPYTER_CONFIG_DIR=str(settings / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(settings / "lab-settings"), JUPYTER_RUNTIME_DIR=str(settings / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(settings / "workspaces"), PYDEVD_DISABLE_FILE_VALIDATION="1",
               OMP_WAIT_POLICY="PASSIVE")  # kernel, server and browser share 2 cores: no busy-waiting torch threads
    env.pop("MPLBACKEND", None)
    lab_settings = {  # no "get Jupyter news?" toast over the page; render every cell (no virtual scrolling)
        "apputils-extension/notification": '{"fetchNews": "false"}',
        "notebook-extension/tracker": '{"windowingMode": "none"}',
    }
    for plugin, value in lab_settings.items():
        path = settings / "lab-settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.port_retries=0", "--allow-root", "--ServerApp.terminals_enabled=False",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(log_path, "w")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}; log: {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return process, f"{base}/lab/tree/{{path}}?token={token}&reset"
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s; log: {log_path}")


@pytest.fixture
def lab_url(tmp_path):
    """Serve a temporary folder with JupyterLab; yields (folder, url template with a {path} field)."""
    root = tmp_path / "lab"
    root.mkdir()
    process, url = start_jupyterlab(root, tmp_path / "jupyterlab.log")
    try:
        yield root, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _missing_voila() -> None:
    message = ("the demo test needs Voila: `pip install -e '.[demo]'` (what `make demo` installs). It skips without "
               "it, unless COURSE_REQUIRE_DEMO=1, where it fails instead.")
    if os.environ.get("COURSE_REQUIRE_DEMO") == "1":
        pytest.fail(f"COURSE_REQUIRE_DEMO=1 but {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    """Serve a temporary copy of demo/ with Voila (as `make demo` does); yields a URL template with a {name} field."""
    import importlib.util
    import shutil

    from course_utils.paths import REPO_ROOT

    if importlib.util.find_spec("voila") is None:
        _missing_voila()
    root = tmp_path_factory.mktemp("demo")
    for notebook in (REPO_ROOT / "demo").glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    port = _free_port()
    settings = root.parent / "voila-settings"
    env = dict(os.environ, TQDM_DISABLE="1", PYDEVD_DISABLE_FILE_VALIDATION="1", OMP_WAIT_POLICY="PASSIVE",
               JUPYTER_CONFIG_DIR=str(settings / "config"), JUPYTER_RUNTIME_DIR=str(settings / "runtime"))
    env.pop("MPLBACKEND", None)
    command = [sys.executable, "-m", "voila", str(root), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
               "--Voila.port_retries=0"]
    log_path = root.parent / "voila.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Voila exited with code {process.returncode}; log: {log_path}")
            try:
                with urllib.request.urlopen(f"{base}/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Voila did not answer within {SERVER_START_TIMEOUT_S} s; "
                                       f"log: {log_path}") from None
                time.sleep(0.5)
        yield f"{base}/voila/render/{{name}}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
