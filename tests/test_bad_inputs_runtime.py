"""Bad inputs and faults of the runtime modules, one row each: devices, generation, sampling, LoRA/adapters,
training, data files, widgets/explorer.

Every row asserts the error type, that the message names the problem (``problem``) and what is allowed or the fix
(``allowed``), that the tiny model's parameters did not change, and that the row's folder on disk is exactly as it
was before the call (names, sizes and SHA-256 of every file: nothing half-written, nothing left behind).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from course_utils import LlamaModel, ModelConfig
from course_utils.chat_data import encode_example
from course_utils.datasets import load_jsonl
from course_utils.device import pick_device
from course_utils.explorer import SamplingExplorer
from course_utils.generation import generate
from course_utils.lora import add_lora, lora_modules, merge_lora
from course_utils.lora_adapters import AdapterError, load_adapter, save_adapter
from course_utils.prompt_tasks import load_task, load_tasks
from course_utils.rope_pair import pair_rotation_state
from course_utils.sampling import SamplingConfig, repetition_penalty, sample_next, temperature, top_k
from course_utils.seeding import seed_everything
from course_utils.streaming import text_streamer
from course_utils.training import NonFiniteLossError, TrainConfig, train
from course_utils.widgets.explorer_html import probability_colour

HEADER = {"task": "toy", "instruction": "Answer.", "answer_format": "a word", "expert": "You know.",
          "answer_type": "number"}


@dataclass
class Ctx:
    """What a row may use: the tiny model, its folder, and (lazily) the real course model."""

    model: LlamaModel
    folder: Path
    request: pytest.FixtureRequest

    def course(self):
        return self.request.getfixturevalue("course_model")


@dataclass
class Row:
    name: str
    category: str
    error: type[BaseException]
    problem: str  # regex: the message names what is wrong (argument, value, file and line)
    allowed: str  # regex: the message says what is allowed or how to fix it
    run: Callable[[Ctx], object]
    prepare: Callable[[Ctx], None] | None = None  # writes the row's files before the snapshot


class StubModel:
    """Next-token logits favour token 3; the third forward pass returns ``poison`` in row 0."""

    def __init__(self, poison: float):
        self.config = SimpleNamespace(vocab_size=10, eos_id=2, max_seq_len=64)
        self.device = torch.device("cpu")
        self.calls, self.poison = 0, poison

    def new_cache(self, batch, total):
        return SimpleNamespace(reorder=lambda index: None)

    def __call__(self, ids, cache=None, attention_mask=None, last_only=False):
        self.calls += 1
        logits = torch.zeros(ids.shape[0], ids.shape[1], 10)
        logits[..., 3] = 5.0
        if self.calls == 3:
            logits[0, -1] = self.poison
        return logits


def _lines(path: Path, *records, raw: bytes = b"") -> None:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + raw)


def _date(day: int) -> dict:
    return {"prompt": f"Convert the date to ISO 8601: {day} May 2020", "answer": f"2020-05-{day:02d}",
            "style": "day_month"}


def _item(question: str) -> dict:
    return {"split": "test", "question": question, "answer": "4"}


def _saved_adapter(ctx: Ctx, r: int = 2) -> Path:
    """Save an adapter of a copy of the tiny model into ctx.folder / 'adapter' (ctx.model stays without LoRA)."""
    donor = LlamaModel(ctx.model.config)
    donor.load_state_dict(ctx.model.state_dict())
    add_lora(donor, targets=("q_proj", "v_proj"), r=r, alpha=4)
    with torch.no_grad():
        for module in lora_modules(donor).values():
            module.lora_B.normal_()
    return save_adapter(donor, ctx.folder / "adapter")


def _rewrite_adapter(ctx: Ctx, change_tensors=None, change_config=None, raw_config: str | None = None) -> None:
    folder = _saved_adapter(ctx)
    path = folder / "adapter.safetensors"
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    config = json.loads(metadata["course_lora_config"])
    if change_config:
        change_config(config)
    metadata["course_lora_config"] = raw_config if raw_config is not None else json.dumps(config)
    save_file(tensors, str(path), metadata=metadata)


def _truncate_adapter(ctx: Ctx) -> None:
    path = _saved_adapter(ctx) / "adapter.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _peft_adapter(ctx: Ctx) -> None:
    folder = ctx.folder / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16}))
    save_file({"base_model.model.q_proj.lora_A.weight": torch.zeros(8, 32)}, str(folder / "adapter_model.safetensors"))


def _set_nan(tensors: dict) -> None:
    next(iter(tensors.values()))[0, 0] = float("nan")


def _set_rank_3(tensors: dict) -> None:
    key = next(k for k in tensors if k.endswith("lora_A"))
    tensors[key] = torch.zeros(3, tensors[key].shape[1])


def _merged_then_load(ctx: Ctx) -> None:
    folder = ctx.folder / "adapter"
    add_lora(ctx.model, targets=("q_proj", "v_proj"), r=2, alpha=4)
    merge_lora(ctx.model)
    ctx.snapshot_model()  # type: ignore[attr-defined]  # the model changed on purpose before the call under test
    load_adapter(ctx.model, folder)


def _explorer(ctx: Ctx, **kwargs) -> SamplingExplorer:
    model, tokenizer = ctx.course()
    return SamplingExplorer(model, tokenizer, "Once upon a time", **kwargs)


def _diverging_train(ctx: Ctx) -> None:
    add_lora(ctx.model, targets=("q_proj",), r=2, alpha=4)
    with torch.no_grad():
        ctx.model.norm.weight.fill_(float("inf"))  # what an overflowing run leaves behind
    ctx.snapshot_model()  # type: ignore[attr-defined]
    examples = [([1, 2, 3, 4], [-100, -100, 3, 4])] * 4
    train(ctx.model, examples, TrainConfig(steps=3, batch_size=2), pad_id=0, progress=False)


def _duplicate_tasks(ctx: Ctx) -> None:
    for name in ("a.jsonl", "b.jsonl"):
        _lines(ctx.folder / name, HEADER, _item("Is it?"))


PROMPTS = [[5, 17, 42], [11, 3]]
LOGITS = torch.tensor([0.0, 1.0, 2.0, 3.0])

ROWS = [
    # --- devices ---------------------------------------------------------------------------------------------
    Row("unknown device name", "devices", ValueError, "unknown device 'gpu'", "allowed: 'auto', 'cpu', 'cuda'",
        lambda c: pick_device("gpu")),
    Row("device given as a number", "devices", TypeError, "got int", "a string or a torch.device",
        lambda c: pick_device(0)),
    Row("negative seed", "devices", ValueError, "seed .*got -1", "an integer >= 0", lambda c: seed_everything(-1)),
    Row("float seed", "devices", TypeError, r"seed .*got 1\.5", "an integer >= 0", lambda c: seed_everything(1.5)),
    # --- generation ------------------------------------------------------------------------------------------
    Row("float token id (truncated before)", "generation", TypeError, r"prompts\[0\]\[0\].*got 504\.9",
        r"integer token ids in \[0, 96\]", lambda c: generate(c.model, [[504.9]])),
    Row("token id outside the vocabulary", "generation", ValueError, r"prompts\[1\]\[1\].*got 200",
        r"in \[0, 96\]", lambda c: generate(c.model, [[5], [6, 200]])),
    Row("bool as a token id", "generation", TypeError, r"prompts\[0\]\[0\].*got True", "integer token ids",
        lambda c: generate(c.model, [[True, 4]])),
    Row("a bare string without tokenizer", "generation", ValueError, "string prompts need tokenizer",
        "or pass lists of token ids", lambda c: generate(c.model, ["hello"])),
    Row("max_new_tokens=2.5", "generation", TypeError, r"max_new_tokens .*got 2\.5", "an integer >= 1",
        lambda c: generate(c.model, PROMPTS, max_new_tokens=2.5)),
    Row("max_new_tokens beyond the context", "generation", ValueError, "= 1002 exceeds",
        "the context length 128", lambda c: generate(c.model, PROMPTS, max_new_tokens=999)),
    Row("eos_id outside the vocabulary", "generation", ValueError, "eos_id .*got -5",
        r"in \[-1, 96\] \(None = the model's, -1 = never stop\)", lambda c: generate(c.model, PROMPTS, eos_id=-5)),
    Row("sampling given as a string", "generation", TypeError, "sampling .*got str",
        r"None \(greedy\) or a SamplingConfig", lambda c: generate(c.model, PROMPTS, sampling="greedy")),
    Row("greedy decoding on NaN logits", "generation", ValueError, r"row\(s\) \[0\] hold NaN",
        "check the weights", lambda c: generate(StubModel(float("nan")), [[1, 2]], max_new_tokens=5)),
    Row("sampling on an all -inf row", "generation", ValueError, r"row\(s\) \[0\] .*no finite value",
        "check the weights", lambda c: generate(StubModel(float("-inf")), [[1, 2]], max_new_tokens=5,
                                                sampling=SamplingConfig(top_p=0.9), seed=0)),
    Row("beam search on NaN logits", "generation", ValueError, r"prompt\(s\) \[0\] hold NaN",
        "check the weights", lambda c: generate(StubModel(float("nan")), [[1, 2]], max_new_tokens=5, num_beams=2)),
    Row("stream row below zero", "generation", ValueError, "row .*got -1", "an integer >= 0",
        lambda c: text_streamer(None, row=-1)),
    Row("seed=True", "generation", TypeError, "seed .*got True", "an integer >= 0",
        lambda c: generate(c.model, PROMPTS, seed=True)),
    # --- sampling --------------------------------------------------------------------------------------------
    Row("NaN temperature", "sampling", ValueError, "temperature .*got nan", r"a finite number >= 0 \(0 = greedy\)",
        lambda c: SamplingConfig(temperature=float("nan"))),
    Row("bool temperature", "sampling", TypeError, "temperature .*got True", "a finite number >= 0",
        lambda c: SamplingConfig(temperature=True)),
    Row("1-D tensor temperature", "sampling", TypeError, r"got shape \(2,\)", "a tensor must be 0-d and real",
        lambda c: SamplingConfig(temperature=torch.tensor([0.5, 0.7]))),
    Row("top_p = 0", "sampling", ValueError, r"top_p .*got 0\.0", r"a number in \(0, 1\] \(1 = off\)",
        lambda c: SamplingConfig(top_p=0)),
    Row("top_k = 2.5", "sampling", TypeError, r"top_k .*got 2\.5", r"an integer >= 0 \(0 = off\)",
        lambda c: SamplingConfig(top_k=2.5)),
    Row("float previous_ids", "sampling", TypeError, r"previous_ids\[1\] .*got 2\.7", r"integer token ids in \[0, 3\]",
        lambda c: repetition_penalty(LOGITS, [1, 2.7], 1.3)),
    Row("previous_ids outside the vocabulary", "sampling", ValueError, "previous_ids .*got ids from 1 to 9",
        r"in \[0, 3\]", lambda c: repetition_penalty(LOGITS, torch.tensor([1, 9]), 1.3)),
    Row("sample_next on a NaN row", "sampling", ValueError, r"row\(s\) \[1\] hold NaN", "check the model",
        lambda c: sample_next(torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), SamplingConfig())),
    Row("infinite temperature", "sampling", ValueError, "temperature .*got inf", "a finite number > 0",
        lambda c: temperature(LOGITS, float("inf"))),
    Row("integer logits", "sampling", TypeError, "got Tensor of dtype torch.int64", "floating-point torch.Tensor",
        lambda c: top_k(torch.arange(4), 2)),
    # --- LoRA / adapters -------------------------------------------------------------------------------------
    Row("add_lora twice", "lora", ValueError, "already has LoRA", "load a fresh model",
        lambda c: add_lora(c.model, targets=("q_proj",)), prepare=lambda c: add_lora(c.model, targets=("q_proj",))),
    Row("rank 0", "lora", ValueError, "rank r .*got 0", "an integer >= 1", lambda c: add_lora(c.model, r=0)),
    Row("unknown target", "lora", ValueError, r"unknown LoRA target\(s\) \['qkv'\]", r"allowed: \['down_proj'",
        lambda c: add_lora(c.model, targets=("qkv",))),
    Row("adapter folder without the file", "lora", AdapterError, "no adapter file at .*adapter.safetensors",
        "save_adapter", lambda c: load_adapter(c.model, c.folder / "adapter"),
        prepare=lambda c: (c.folder / "adapter").mkdir()),
    Row("adapter file given instead of its folder", "lora", AdapterError, "adapter.safetensors is a file",
        "pass the folder that save_adapter wrote", lambda c: load_adapter(c.model, c.folder / "adapter" /
                                                                          "adapter.safetensors"),
        prepare=_saved_adapter),
    Row("truncated adapter file", "lora", AdapterError, "adapter.safetensors is damaged", "save the adapter again",
        lambda c: load_adapter(c.model, c.folder / "adapter"), prepare=_truncate_adapter),
    Row("adapter config is not JSON", "lora", AdapterError, "not valid JSON", "save the adapter again",
        lambda c: load_adapter(c.model, c.folder / "adapter"),
        prepare=lambda c: _rewrite_adapter(c, raw_config="{r: 2,")),
    Row("a PEFT adapter", "lora", AdapterError, "no adapter file .*a Hugging Face PEFT adapter", "save_adapter",
        lambda c: load_adapter(c.model, c.folder / "adapter"), prepare=_peft_adapter),
    Row("adapter config of PEFT form", "lora", AdapterError, r"PEFT adapter config \(LORA\)",
        "reads adapters written by course_utils.lora_adapters.save_adapter",
        lambda c: load_adapter(c.model, c.folder / "adapter"),
        prepare=lambda c: _rewrite_adapter(c, raw_config=json.dumps({"peft_type": "LORA", "r": 2}))),
    Row("adapter of another base model", "lora", AdapterError, "trained on base model 'tiny-test'", "not 'other'",
        lambda c: load_adapter(LlamaModel(ModelConfig(**{**c.model.config.to_dict(), "name": "other"})),
                               c.folder / "adapter"), prepare=_saved_adapter),
    Row("adapter for other layer shapes", "lora", AdapterError, r"weight shape \[48, 48\]", r"expects \[32, 32\]",
        lambda c: load_adapter(LlamaModel(ModelConfig(**{**c.model.config.to_dict(), "dim": 48, "n_heads": 4})),
                               c.folder / "adapter"), prepare=_saved_adapter),
    Row("tensor shape disagrees with the config", "lora", AdapterError, r"lora_A has shape \(3, 32\)",
        r"expected \(2, 32\)", lambda c: load_adapter(c.model, c.folder / "adapter"),
        prepare=lambda c: _rewrite_adapter(c, change_tensors=_set_rank_3)),
    Row("NaN in the adapter", "lora", AdapterError, "holds NaN or infinite values", "diverged run",
        lambda c: load_adapter(c.model, c.folder / "adapter"),
        prepare=lambda c: _rewrite_adapter(c, change_tensors=_set_nan)),
    Row("negative alpha in the config", "lora", AdapterError, "alpha .*got -4.0", "a finite number > 0",
        lambda c: load_adapter(c.model, c.folder / "adapter"),
        prepare=lambda c: _rewrite_adapter(c, change_config=lambda d: d.update(alpha=-4.0))),
    Row("load into merged LoRA layers", "lora", AdapterError, "unmerge the LoRA layers", r"unmerge_lora",
        _merged_then_load, prepare=_saved_adapter),
    Row("save onto an existing file", "lora", ValueError, "is a file", "give save_adapter a folder",
        lambda c: save_adapter(c.model, c.folder / "taken"),
        prepare=lambda c: (add_lora(c.model), (c.folder / "taken").write_text("mine"))),
    Row("save without LoRA layers", "lora", ValueError, "no LoRA layers to save", "call add_lora first",
        lambda c: save_adapter(c.model, c.folder / "adapter")),
    # --- training --------------------------------------------------------------------------------------------
    Row("answer holding <|im_end|>", "training", ValueError, r"contains the end-of-turn token '<\|im_end\|>'",
        "remove it from the answer", lambda c: encode_example(c.course()[1], "Date?", "2021-03-03<|im_end|>x")),
    Row("NaN learning rate", "training", ValueError, "TrainConfig.lr .*got nan", "a finite number > 0",
        lambda c: TrainConfig(steps=1, lr=float("nan"))),
    Row("steps=2.0", "training", TypeError, r"TrainConfig.steps .*got 2\.0", "an integer >= 1",
        lambda c: TrainConfig(steps=2.0)),
    Row("unknown schedule", "training", ValueError, "schedule .*got 'cosine'", "one of 'constant', 'linear'",
        lambda c: TrainConfig(steps=1, schedule="cosine")),
    Row("fewer examples than a batch", "training", ValueError, "got 1", "need at least batch_size=2",
        lambda c: train(c.model, [([1, 2], [1, 2])], TrainConfig(steps=1, batch_size=2), pad_id=0, progress=False),
        prepare=lambda c: add_lora(c.model)),
    Row("non-finite loss", "training", NonFiniteLossError, "stopped at step 1 of 3: the loss is nan",
        "Lower the learning rate", _diverging_train),
    # --- data files ------------------------------------------------------------------------------------------
    Row("dates file not UTF-8", "data", ValueError, r"d\.jsonl, line 2: not UTF-8 text \(byte 0xe9",
        "save the file as UTF-8", lambda c: load_jsonl(c.folder / "d.jsonl"),
        prepare=lambda c: _lines(c.folder / "d.jsonl", _date(1), raw=b'{"prompt": "caf\xe9"}\n')),
    Row("empty dates file", "data", ValueError, r"d\.jsonl holds no examples", "python -m course_utils.datasets",
        lambda c: load_jsonl(c.folder / "d.jsonl"), prepare=lambda c: (c.folder / "d.jsonl").write_text("\n")),
    Row("duplicate date", "data", ValueError, r"line 3: duplicate of line 1", "python -m course_utils.datasets",
        lambda c: load_jsonl(c.folder / "d.jsonl"),
        prepare=lambda c: _lines(c.folder / "d.jsonl", _date(1), _date(2), _date(1))),
    Row("dates line with other keys", "data", ValueError, r"line 2: expected non-empty strings",
        r"\['answer', 'prompt', 'style'\]", lambda c: load_jsonl(c.folder / "d.jsonl"),
        prepare=lambda c: _lines(c.folder / "d.jsonl", _date(1), {"prompt": "x", "answer": "y"})),
    Row("dates path is a folder", "data", ValueError, "is a folder, not a JSON-lines file",
        "python -m course_utils.datasets", lambda c: load_jsonl(c.folder)),
    Row("task file not UTF-8", "data", ValueError, r"t\.jsonl, line 2: not UTF-8", "git checkout data/prompting",
        lambda c: load_task(c.folder / "t.jsonl"),
        prepare=lambda c: _lines(c.folder / "t.jsonl", HEADER, raw=b'{"question": "\xff"}\n')),
    Row("duplicate task question", "data", ValueError, r"line 3: the question 'Is it\?' already appears on line 2",
        "remove one of them", lambda c: load_task(c.folder / "t.jsonl"),
        prepare=lambda c: _lines(c.folder / "t.jsonl", HEADER, _item("Is it?"), _item("Is it?"))),
    Row("two files define one task", "data", ValueError, r"b\.jsonl and .*a\.jsonl both define task 'toy'",
        "rename the task in one header", lambda c: load_tasks(c.folder), prepare=_duplicate_tasks),
    Row("task line not JSON", "data", ValueError, r"t\.jsonl, line 2: not valid JSON", "fix that line",
        lambda c: load_task(c.folder / "t.jsonl"),
        prepare=lambda c: (c.folder / "t.jsonl").write_text(json.dumps(HEADER) + "\n{split: test}\n")),
    # --- widgets / explorer ----------------------------------------------------------------------------------
    Row("top_n larger than the vocabulary", "widgets", ValueError, "top_n .*got 100000",
        r"an integer in \[1, 49152\]", lambda c: _explorer(c, top_n=100_000)),
    Row("explorer max_new_tokens=2.5", "widgets", TypeError, r"max_new_tokens .*got 2\.5", "an integer >= 1",
        lambda c: _explorer(c, max_new_tokens=2.5)),
    Row("NaN slider value", "widgets", ValueError, "temperature .*got nan", "a finite number >= 0",
        lambda c: _explorer(c, max_new_tokens=4).update_config(temperature=float("nan"))),
    Row("explorer prompt given as token ids", "widgets", TypeError, r"prompt .*got \[1, 2\]", "a non-empty string",
        lambda c: SamplingExplorer(*c.course(), [1, 2])),
    Row("explorer generate(0)", "widgets", ValueError, "n_tokens .*got 0", "an integer >= 1",
        lambda c: _explorer(c, max_new_tokens=4).generate(0)),
    Row("probability above 1", "widgets", ValueError, r"probability .*got 1\.5", r"a number in \[0, 1\]",
        lambda c: probability_colour(1.5)),
    Row("RoPE pair index past the head", "widgets", ValueError, "pair_index .*got 40",
        r"an integer in \[0, 31\] \(head_dim=64\)", lambda c: pair_rotation_state((1, 0), (0, 1), 2, 1, 40)),
    Row("RoPE pair holding NaN", "widgets", ValueError, r"got \[nan, 0\.0\]", "must hold finite numbers",
        lambda c: pair_rotation_state((math.nan, 0), (0, 1), 2, 1, 0)),
]


def _tree(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its size and SHA-256 (folders as ('dir',))."""
    return {str(p.relative_to(folder)): ("dir",) if p.is_dir() else
            (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(folder.rglob("*"))}


def _parameters(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.category}: {r.name}" for r in ROWS])
def test_bad_input_is_refused_clearly_and_changes_nothing(row, tiny_model, tmp_path, request):
    ctx = Ctx(tiny_model, tmp_path, request)
    if row.prepare is not None:
        row.prepare(ctx)
    before_disk = _tree(tmp_path)
    before_model = {}

    def snapshot_model():
        before_model.clear()
        before_model.update(_parameters(tiny_model))
    ctx.snapshot_model = snapshot_model  # type: ignore[attr-defined]
    snapshot_model()
    with pytest.raises(row.error) as caught:
        row.run(ctx)
    message = str(caught.value)
    assert caught.type is row.error, f"{caught.type.__name__}: {message}"
    assert "\n" not in message, f"one line expected: {message}"
    assert re.search(row.problem, message), f"problem not named in: {message}"
    assert re.search(row.allowed, message), f"allowed values / fix not named in: {message}"
    assert _tree(tmp_path) == before_disk, "files on disk changed"
    after_model = _parameters(tiny_model)
    assert after_model.keys() == before_model.keys(), "layers were added or removed"
    assert all(torch.equal(after_model[k], before_model[k]) for k in before_model), "parameters changed"


def test_table_size_by_category():
    counts: dict[str, int] = {}
    for row in ROWS:
        counts[row.category] = counts.get(row.category, 0) + 1
    assert len(ROWS) >= 35 and len({r.name for r in ROWS}) == len(ROWS)
    assert set(counts) == {"devices", "generation", "sampling", "lora", "training", "data", "widgets"}, counts


def test_interrupted_adapter_save_keeps_the_previous_adapter(tiny_model, tmp_path, monkeypatch):
    """A kill while the new adapter is written (simulated: the writer dies half-way) leaves the old one whole."""
    import course_utils.lora_adapters as lora
    add_lora(tiny_model, targets=("q_proj",), r=2, alpha=4)
    folder = save_adapter(tiny_model, tmp_path / "adapter")
    before = _tree(tmp_path)

    def dying_writer(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a header")
        raise KeyboardInterrupt
    monkeypatch.setattr(lora, "save_file", dying_writer)
    with torch.no_grad():
        lora_modules(tiny_model)["layers.0.self_attn.q_proj"].lora_B.fill_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_adapter(tiny_model, folder)
    assert _tree(tmp_path) == before  # no temporary file left, the old adapter untouched


def test_widget_nan_slider_keeps_the_last_good_settings(course_model):
    from course_utils.widgets import ExplorerWidget
    model, tokenizer = course_model
    explorer = SamplingExplorer(model, tokenizer, "Once upon a time", config=SamplingConfig(temperature=0.7),
                                max_new_tokens=4)
    widget = ExplorerWidget(explorer, generate_n=2)
    widget.temperature.value = float("nan")
    assert explorer.config.temperature == pytest.approx(0.7)
    assert widget.temperature.value == pytest.approx(0.7)
    assert "setting refused" in widget.timing.value and "got nan" in widget.timing.value


@pytest.mark.parametrize("value", [np.float32(0.5), torch.tensor(0.5), np.int64(1)])
def test_real_number_types_work_end_to_end(tiny_model, value):
    sampled = generate(tiny_model, PROMPTS, max_new_tokens=4, sampling=SamplingConfig(temperature=value), seed=3)
    plain = generate(tiny_model, PROMPTS, max_new_tokens=4, sampling=SamplingConfig(temperature=float(value)), seed=3)
    assert sampled.tokens == plain.tokens
