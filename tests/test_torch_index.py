"""tools/torch_index.py: the CPU wheel index only for CPU-only Linux machines that reach it, PyPI otherwise.

PyTorch's own index is not reachable from the machines the course is built on, so the route that uses it is tested
against a local stand-in server; the fallback (unreachable, silent or GPU machine) is tested as it really happens.
"""
from __future__ import annotations

import http.server
import importlib.util
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from course_utils.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("torch_index", REPO_ROOT / "tools" / "torch_index.py")
torch_index = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_index)

pytestmark = pytest.mark.skipif(torch_index.platform.system() != "Linux", reason="the CPU index route is Linux-only")


class _TorchPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
        self.end_headers()
        self.wfile.write(b"<a>torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl</a>")

    def log_message(self, *args):
        pass


@pytest.fixture
def local_index():
    server = http.server.HTTPServer(("127.0.0.1", 0), _TorchPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/whl/cpu"
    server.shutdown()


@pytest.fixture
def no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on PATH


def test_cpu_machine_that_reaches_the_index_uses_it(local_index, no_gpu):
    assert torch_index.torch_pip_options(local_index, timeout=5) == ["--index-url", local_index]


def test_gpu_machine_keeps_pypi(local_index, monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert torch_index.torch_pip_options(local_index, timeout=5) == []


def test_unreachable_index_falls_back_to_pypi(no_gpu):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert torch_index.torch_pip_options(f"http://127.0.0.1:{port}/whl/cpu", timeout=5) == []


def test_silent_index_falls_back_within_the_timeout(no_gpu):
    with socket.socket() as listener:  # accepts connections and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        start = time.perf_counter()
        options = torch_index.torch_pip_options(f"http://127.0.0.1:{listener.getsockname()[1]}/whl/cpu", timeout=1)
        assert options == [] and time.perf_counter() - start < 5


def test_command_line_prints_the_options(local_index, no_gpu, capsys):
    assert torch_index.main(["--index", local_index]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"--index-url {local_index}" and "CPU build" in out.err


def test_makefile_uses_it():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "tools/torch_index.py" in makefile and os.path.exists(REPO_ROOT / "tools" / "torch_index.py")
    assert Path(REPO_ROOT / "tools" / "torch_index.py").read_text().count("import course_utils") == 0
