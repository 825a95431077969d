"""benchmarks/gpu_check.py runs its whole GPU code path on a CPU with a tiny model (``--device cpu --small``)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils.memory import WEIGHT_CASTS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_on_cpu(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--small", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    config = gpu_check.SMALL_CONFIG
    for batch in (1, 8):
        decode = results[f"decode_batch_{batch}"]
        assert decode["batch"] == batch and decode["tokens_per_s"] > 0
    lora, full = results["lora_step"], results["full_step"]
    kv_dim = config.n_kv_heads * config.head_dim
    assert lora["trained_parameters"] == config.n_layers * 8 * ((config.dim + config.dim) + (config.dim + kv_dim))
    assert full["trained_parameters"] == results["parameters"]
    for step in (lora, full):  # the autocast path: bfloat16 weight copies are their own part
        assert step["parts_mib"][WEIGHT_CASTS] > 0 and step["parts_mib"]["activations"] > 0
        assert step["sum_of_parts_mib"] == pytest.approx(sum(step["parts_mib"].values()), abs=0.01)
        assert step["cuda_max_memory_allocated_mib"] is None  # not on CUDA
    assert full["parts_mib"]["gradients"] == full["parts_mib"]["weights"]
    assert lora["parts_mib"]["gradients"] < 0.1 * full["parts_mib"]["gradients"]
    assert results["sync_check"]["status"] == "skipped"
    printed = capsys.readouterr().out
    assert "bf16 decode, batch 8" in printed and "torch.cuda.max_memory_allocated" in printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_gpu_check_without_cuda_says_what_to_do(gpu_check, tmp_path):
    with pytest.raises(SystemExit, match="--device cpu"):
        gpu_check.main(["--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="cuda, cuda:N or cpu"):
        gpu_check.main(["--device", "meta", "--out", str(tmp_path / "x.json")])


def test_forward_decode_matches_generate(gpu_check):
    """The sync check's hand-written greedy loop decodes the same tokens as ``generate``."""
    model = gpu_check.build_model(gpu_check.SMALL_CONFIG, torch.device("cpu"), torch.float32).eval()
    ids = gpu_check.random_ids(model.config, 2, 5, model.device, seed=0)
    mine = gpu_check.greedy_forward_decode(model, ids, 6)
    reference = gpu_check.generate(model, ids.tolist(), max_new_tokens=6, eos_id=gpu_check.NO_EOS)
    assert mine.tolist() == reference.tokens


def test_gpu_check_needs_only_torch(tmp_path):
    """In a Python that has torch but not numpy, tokenizers, gguf, safetensors, tqdm (nor course_utils installed),
    the script still runs: ``python -S`` with a copy of site-packages (as links) that lacks them."""
    blocked = {"numpy", "tokenizers", "gguf", "safetensors", "tqdm", "course_utils"}
    site = Path(torch.__file__).resolve().parent.parent
    shadow = tmp_path / "site-packages"
    shadow.mkdir()
    for entry in site.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top in blocked or entry.suffix == ".pth" or entry.name.startswith("__editable__"):
            continue
        (shadow / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(shadow)
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-S", str(SCRIPT), "--device", "cpu", "--small", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert {"safetensors", "tqdm", "course_utils.seeding"} <= set(results["placeholder_modules"])
    assert results["full_step"]["parts_mib"][WEIGHT_CASTS] > 0


def test_table_shows_cuda_results(gpu_check, tiny_model):
    """The CUDA-only rows (allocator peak, sync check) render, from results shaped as on a GPU."""
    try:
        tiny_model(torch.tensor([[1000]]))  # an id outside the vocabulary: raised inside course_utils
    except ValueError as error:
        where = gpu_check._course_frame(error)
    assert where is not None and where.startswith("model.py:")
    step = {"kind": "LoRA r=8 (q, v)", "batch": 8, "tokens": 256, "trained_parameters": 460800, "seconds": 0.05,
            "parts_mib": {"weights": 515.0, WEIGHT_CASTS: 256.3}, "sum_of_parts_mib": 771.3,
            "cuda_max_memory_allocated_mib": 2048.0}
    results = {"device_name": "GPU", "torch": "2.x", "model": "m", "decode_batch_1": {"error": "boom"},
               "decode_batch_8": {"batch": 8, "tokens_per_s": 1234.0, "ms_per_step": 6.5, "new_tokens": 128},
               "lora_step": step, "full_step": {"status": "error", "error": "OOM"},
               "sync_check": {"status": "fail", "generate_syncs_per_step": 2.0,
                              "generate_sync_sites": {"model.py:316": 40},
                              "forward_decode": {"status": "fail", "error": "called a synchronizing CUDA operation",
                                                 "where": where}}}
    text = gpu_check.table(results)
    assert "2,048.0 MiB" in text and "1,234 tokens/s" in text and "ERROR boom" in text and "ERROR OOM" in text
    assert "FAIL (called a synchronizing CUDA operation at model.py:" in text and "model.py:316 x40" in text
