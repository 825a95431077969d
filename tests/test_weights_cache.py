"""The converted cache: digest-checked at every load, rebuilt and replaced when damaged, optional when unwritable."""
import json
import os
import shutil
import warnings

import pytest
import torch
from weights_helpers import flip_byte, snapshot, write_tiny_gguf

from course_utils import load_model
from course_utils import weights_cache as C
from course_utils.cache_layout import TEMP_PREFIX, default_weights_path
from course_utils.cli import clean_cache, main, scan_cache
from course_utils.load_weights import load_checkpoint


@pytest.fixture
def cache(monkeypatch, tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("COURSE_CACHE", str(root))
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    return root


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def _load_quiet(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checkpoint = load_checkpoint(path, **kwargs)
    return checkpoint, [str(w.message) for w in caught]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_flipped_byte_in_the_course_copy_is_caught_and_rebuilt(cache):
    """The issue's case: one byte of one tensor changed (same size) must not make the model answer garbage."""
    os.link(_course_file(), cache / "SmolLM2-135M-Instruct.Q4_1.gguf")  # a hard link: never written to
    model, tok = load_model(device="cpu")
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        reference = model(ids)
    entry = C.entry_dir(default_weights_path())
    weights = entry / "model.safetensors"
    header = 8 + int.from_bytes(weights.read_bytes()[:8], "little")
    flip_byte(weights, header + (weights.stat().st_size // 2 - header) // 4 * 4 + 3)  # a float32's exponent byte
    with pytest.warns(UserWarning, match="unusable.*CRC-32.*rebuilding"):
        model, tok = load_model(device="cpu")
    with torch.no_grad():
        assert torch.allclose(model(ids), reference, atol=1e-5)
    assert C.check_entry(entry, default_weights_path(), strong=True)[0] is not None  # replaced by a whole copy


def _course_file():
    real = os.environ.get("COURSE_REAL_CACHE") or os.path.expanduser("~/.cache/llm-course")
    path = os.path.join(real, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        pytest.skip("the course GGUF is not fetched (run `make setup`)")
    return path


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta-json", "meta-edit", "delete-tokenizer"])
def test_damaged_entries_are_replaced_once_not_rebuilt_every_load(cache, tiny, damage):
    fresh, _ = _load_quiet(tiny)
    entry = C.entry_dir(tiny)
    if damage == "flip":
        flip_byte(entry / "model.safetensors", (entry / "model.safetensors").stat().st_size - 5)
    elif damage == "truncate":
        os.truncate(entry / "model.safetensors", 1000)
    elif damage == "meta-json":
        (entry / "meta.json").write_text("{not json")
    elif damage == "meta-edit":  # a config value changed by hand: the meta's own checksum catches it
        meta = json.loads((entry / "meta.json").read_text())
        meta["config"]["rope_theta"] = 1.0
        (entry / "meta.json").write_text(json.dumps(meta))
    else:
        (entry / "tokenizer.json").unlink()
    again, messages = _load_quiet(tiny)
    assert _same(again.state_dict, fresh.state_dict) and again.config == fresh.config
    assert any("unusable" in m and "rebuilding" in m for m in messages)
    _, messages = _load_quiet(tiny)  # the rebuilt copy replaced the damaged one: no second rebuild
    assert not any("unusable" in m for m in messages)
    assert sorted(p.name for p in (cache / "converted").iterdir()) == [entry.name]  # no debris


def test_a_changed_source_replaces_its_entry_instead_of_orphaning_it(cache, tiny):
    first, _ = _load_quiet(tiny)
    write_tiny_gguf(tiny, seed=1)  # "re-fetched": same path, new content
    second, _ = _load_quiet(tiny)
    assert not _same(first.state_dict, second.state_dict)
    assert len(list((cache / "converted").iterdir())) == 1


def test_unwritable_cache_warns_and_loads_in_memory(cache, tiny, monkeypatch):
    """Runs as root here, where chmod does not stop writes: the refusal is simulated by making os.replace fail."""
    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(C.os, "replace", refuse)
    checkpoint, messages = _load_quiet(tiny)
    assert checkpoint.config.n_layers == 1
    assert any("continuing in memory" in m and "COURSE_CACHE" in m for m in messages)
    assert list((cache / "converted").iterdir()) == []  # the staging folder was removed


def test_cache_under_a_file_warns_and_loads_in_memory(cache, tiny):
    """A path under a regular file cannot be created, even by root: the other way to see an unwritable cache."""
    (cache / "converted").write_text("not a folder")
    checkpoint, messages = _load_quiet(tiny)
    assert checkpoint.config.dim == 16
    assert any("continuing in memory" in m for m in messages)


def test_entries_are_readable_by_others_whatever_the_umask(cache, tiny):
    old = os.umask(0o077)
    try:
        _load_quiet(tiny)
    finally:
        os.umask(old)
    entry = C.entry_dir(tiny)
    assert entry.stat().st_mode & 0o777 == 0o755 and entry.parent.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in entry.iterdir())


def test_stale_temporaries_are_swept_and_live_ones_kept(cache, tiny):
    dead = [cache / f"{TEMP_PREFIX}999999999-a", cache / "converted" / f"{TEMP_PREFIX}999999999-b"]
    live = cache / "converted" / f"{TEMP_PREFIX}{os.getpid()}-c"
    for folder in [*dead, live]:
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half" * 100)
    _load_quiet(tiny)
    assert not any(d.exists() for d in dead) and live.exists()
    old = live.stat().st_mtime - 2 * 3600
    os.utime(live, (old, old))  # an hour-old staging folder is debris even if its process id lives on
    _load_quiet(tiny)
    assert not live.exists()


def test_unverified_gguf_warns_once(cache, tiny):
    _, first = _load_quiet(tiny)
    _, second = _load_quiet(tiny)
    assert sum("unverified" in m for m in first) == 1 and not any("unverified" in m for m in second)


def test_cache_command_lists_verifies_and_cleans(cache, tiny, tmp_path, capsys):
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=2)
    gone = write_tiny_gguf(tmp_path / "gone.gguf", seed=3)
    for path in (tiny, other, gone):
        _load_quiet(path)
    gone.unlink()
    flip_byte(C.entry_dir(other) / "model.safetensors", 200)
    stale = cache / "converted" / f"{TEMP_PREFIX}999999999-x"
    stale.mkdir()
    states = {item.path.name: item.state for item in scan_cache()}
    assert states[C.entry_dir(tiny).name] == "ok"
    assert states[C.entry_dir(other).name].startswith("damaged")
    assert states[C.entry_dir(gone).name].startswith("orphan")
    assert states[stale.name].startswith("stale")
    assert main(["cache", "verify"]) == 1
    assert "damaged" in capsys.readouterr().out
    assert main(["cache", "list"]) == 0
    removed = {item.path for item in clean_cache()}
    assert removed == {C.entry_dir(other), C.entry_dir(gone), stale}
    assert main(["cache", "verify"]) == 0
    before = snapshot(cache)
    assert main(["cache", "clean"]) == 0 and snapshot(cache) == before  # nothing more to remove
    assert main(["cache", "clean", "--all"]) == 0
    assert list(cache.iterdir()) == [] or [p.name for p in cache.iterdir()] == ["converted"]
    shutil.rmtree(cache)


def test_an_entry_from_the_previous_format_is_removed_when_its_file_is_converted_again(cache, tiny):
    old = cache / "converted" / "tiny-0123456789abcdef"  # format 1 keyed entries by path, size and mtime
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"config": {}, "chat_template": None}))
    (old / "model.safetensors").write_bytes(b"0" * 1000)
    _load_quiet(tiny)
    assert not old.exists() and C.entry_dir(tiny).exists()


def test_a_full_disk_while_saving_warns_and_loads_in_memory(cache, tiny, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    def disk_full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    checkpoint, messages = _load_quiet(tiny)
    assert checkpoint.config.n_layers == 1 and any("No space left" in m for m in messages)
    assert list((cache / "converted").iterdir()) == []


def test_an_entry_of_format_2_is_rebuilt_so_no_stale_name_survives(cache, tiny):
    """Format 2 stored configs without display_name; loading one would show the file's raw name forever."""
    _load_quiet(tiny)
    entry = C.entry_dir(tiny)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["format"] == C.CONVERTED_FORMAT == 3 and meta["config"]["display_name"] == "tiny-llama"
    del meta["config"]["display_name"]
    meta["format"] = 2
    meta["config"]["name"] = "a stale name"  # what an older version may have stored
    meta["meta_crc32"] = C._meta_checksum(meta)
    (entry / "meta.json").write_text(json.dumps(meta))
    assert C.check_entry(entry, tiny) == (None, "made by an older course version (format 2)")
    checkpoint, messages = _load_quiet(tiny)
    assert any("format 2" in m and "rebuilding" in m for m in messages)
    assert checkpoint.config.name == checkpoint.config.display_name == "tiny-llama"
    rebuilt = json.loads((entry / "meta.json").read_text())
    assert rebuilt["format"] == 3 and rebuilt["config"]["display_name"] == "tiny-llama"
    assert C.check_entry(entry, tiny)[0] is not None


def test_the_course_model_keeps_its_identity_and_gets_a_friendly_name(course_model):
    from course_utils.fetch import COURSE_DISPLAY_NAME, COURSE_MODEL_NAME

    model, _ = course_model
    assert model.config.name == COURSE_MODEL_NAME  # what saved adapters recorded and check
    assert model.config.display_name == COURSE_DISPLAY_NAME == "SmolLM2-135M-Instruct"
