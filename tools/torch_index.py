"""Print the pip options that pick the right torch build for this machine (run before anything is installed).

On Linux, PyPI's torch wheel is the CUDA build: a download of several GB that a CPU-only machine never uses. So on a
Linux machine without an NVIDIA GPU (no ``nvidia-smi``), and when PyTorch's CPU wheel index answers within a few
seconds, this prints ``--index-url <that index>``. Otherwise it prints nothing and pip uses PyPI as configured
(the CUDA build on Linux with a GPU, the only build on macOS and Windows, or a local wheel where pip is set up with
one). Used by the Makefile; standard library only.

    python tools/torch_index.py [--index URL] [--timeout SECONDS]
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import urllib.error
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def index_answers(url: str, timeout: float) -> bool:
    """True when the index serves its torch page within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def torch_pip_options(index: str = CPU_INDEX, timeout: float = 5.0) -> list[str]:
    """``["--index-url", index]`` for a CPU-only Linux machine that reaches the index, else ``[]`` (PyPI)."""
    if platform.system() != "Linux" or has_nvidia_gpu():
        return []
    return ["--index-url", index] if index_answers(index, timeout) else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=CPU_INDEX)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    options = torch_pip_options(args.index, args.timeout)
    where = f"the CPU build from {args.index}" if options else "torch from PyPI as pip is configured"
    print(f"torch: installing {where}", file=sys.stderr)
    print(" ".join(options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
