"""The course model against Hugging Face transformers / PEFT on the same weights, in one process.

Each timed comparison alternates the two sides (course, reference, course, reference, ...) after one warm-up run of
each, and reports medians and their ratio. Results are printed as a table and saved as JSON.

    make bench            # or: .venv/bin/python benchmarks/compare_hf.py [--quick] [--out PATH]

Needs transformers and peft (both in the [dev] extra). Close other heavy processes first: timings are only comparable
between runs on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine_info import machine_facts, results_path

from course_utils import load_model
from course_utils.cache_layout import default_weights_path
from course_utils.decoding_io import NO_EOS
from course_utils.generation import generate
from course_utils.hf_dir import export_hf_dir
from course_utils.load_weights import load_checkpoint
from course_utils.lora import add_lora
from course_utils.memory import measure_training_step
from course_utils.training import masked_lm_loss

PROMPT = "The history of the printing press begins in the fifteenth century, when"


def alternate(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each side, timed in turns after one warm-up call each."""
    for run in sides.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def reference_model(folder: Path):
    import transformers

    return transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                         attn_implementation="sdpa").eval()


def correctness(course, hf, tokenizer) -> dict:
    ids = torch.tensor([tokenizer.encode(PROMPT * 4)[:64]])
    with torch.inference_mode():
        diff = (course(ids) - hf(ids).logits).abs().max().item()
    return {"max_abs_logit_difference": diff, "tokens": ids.shape[1]}


def decoding(course, hf, tokenizer, batch: int, new_tokens: int, repeats: int) -> dict:
    prompt = tokenizer.encode(PROMPT)
    ids = torch.tensor([prompt] * batch)
    outputs = {}

    def ours():
        outputs["course"] = generate(course, [prompt] * batch, max_new_tokens=new_tokens, eos_id=NO_EOS).tokens[0]

    def theirs():
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        outputs["reference"] = out[0, len(prompt):].tolist()

    seconds = alternate({"course": ours, "reference": theirs}, repeats)
    same = sum(a == b for a, b in zip(outputs["course"], outputs["reference"]))
    return {"course_tokens_per_s": batch * new_tokens / seconds["course"],
            "reference_tokens_per_s": batch * new_tokens / seconds["reference"],
            "identical_greedy_tokens": f"{same}/{new_tokens}"}


def prefill(course, hf, tokenizer, length: int, repeats: int) -> dict:
    ids = torch.tensor([(tokenizer.encode(PROMPT) * length)[:length]])

    def ours():
        with torch.inference_mode():
            course(ids, last_only=True)

    def theirs():
        with torch.inference_mode():
            hf(ids, use_cache=False, logits_to_keep=1)

    seconds = alternate({"course": ours, "reference": theirs}, repeats)
    return {"course_tokens_per_s": length / seconds["course"], "reference_tokens_per_s": length / seconds["reference"]}


def lora_step(folder: Path, batch: int, length: int, repeats: int) -> dict:
    """One LoRA training step (r=8, alpha=16, q and v) on random tokens: time and memory, ours vs PEFT."""
    import peft

    course, _ = load_model(device="cpu", dtype=torch.float32)
    add_lora(course, targets=("q_proj", "v_proj"), r=8, alpha=16)
    course.train()
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    reference = peft.get_peft_model(reference_model(folder), config)
    reference.train()
    ids = torch.randint(0, course.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    optimizers = {
        "course": torch.optim.AdamW([p for p in course.parameters() if p.requires_grad], lr=1e-4),
        "reference": torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=1e-4),
    }
    losses = {"course": lambda: masked_lm_loss(course(ids), labels),
              "reference": lambda: reference(input_ids=ids, labels=labels).loss}

    def step(name: str) -> Callable[[], None]:
        def run():
            optimizers[name].zero_grad(set_to_none=True)
            losses[name]().backward()
            optimizers[name].step()
        return run

    seconds = alternate({name: step(name) for name in losses}, repeats)
    memory = {name: measure_training_step(model, losses[name], optimizers[name])
              for name, model in (("course", course), ("reference", reference))}
    return {"course_seconds": seconds["course"], "reference_seconds": seconds["reference"],
            "course_memory_mib": memory["course"].total / 2**20,
            "reference_memory_mib": memory["reference"].total / 2**20,
            "course_activations_mib": memory["course"].activations / 2**20,
            "reference_activations_mib": memory["reference"].activations / 2**20}


def loading(folder: Path) -> dict:
    """Cold load (dequantise + build the cache) in a fresh cache folder, then warm load; and transformers' load."""
    source = default_weights_path()  # read before COURSE_CACHE points elsewhere
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("COURSE_CACHE")
        os.environ["COURSE_CACHE"] = cache
        try:
            gguf = Path(cache) / source.name
            shutil.copyfile(source, gguf)
            start = time.perf_counter()
            load_model(gguf, device="cpu")
            cold = time.perf_counter() - start
            start = time.perf_counter()
            load_model(gguf, device="cpu")
            warm = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("COURSE_CACHE")
            else:
                os.environ["COURSE_CACHE"] = previous
    start = time.perf_counter()
    reference_model(folder)
    return {"course_cold_s": cold, "course_warm_s": warm, "reference_from_pretrained_s": time.perf_counter() - start}


def machine() -> dict:
    import peft
    import transformers

    return {**machine_facts(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "dtype": "float32"}


def print_table(results: dict) -> None:
    print(f"\nmachine: {results['machine']}")
    print(f"correctness: max |logit difference| = {results['correctness']['max_abs_logit_difference']:.2e} "
          f"over {results['correctness']['tokens']} tokens")
    print(f"{'comparison':<38}{'course':>12}{'reference':>12}{'ratio':>8}")
    for name, key in (("greedy decode b=1 (tokens/s)", "decode_b1"), ("greedy decode b=8 (tokens/s)", "decode_b8"),
                      ("prefill 512 tokens (tokens/s)", "prefill")):
        row = results[key]
        ratio = row["course_tokens_per_s"] / row["reference_tokens_per_s"]
        print(f"{name:<38}{row['course_tokens_per_s']:>12.1f}{row['reference_tokens_per_s']:>12.1f}{ratio:>7.2f}x")
    lora = results["lora_step"]
    print(f"{'LoRA step r=8 q,v 16x64 (s)':<38}{lora['course_seconds']:>12.2f}{lora['reference_seconds']:>12.2f}"
          f"{lora['course_seconds'] / lora['reference_seconds']:>7.2f}x")
    print(f"{'LoRA step memory (MiB, accounted)':<38}{lora['course_memory_mib']:>12.0f}"
          f"{lora['reference_memory_mib']:>12.0f}{lora['course_memory_mib'] / lora['reference_memory_mib']:>7.2f}x")
    load = results["load"]
    print(f"{'load cold / warm (s)':<38}{load['course_cold_s']:>6.1f} /{load['course_warm_s']:>4.1f}"
          f"{load['reference_from_pretrained_s']:>12.1f}")
    for key in ("decode_b1", "decode_b8"):
        print(f"{key}: identical greedy tokens course vs reference: {results[key]['identical_greedy_tokens']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats (a smoke run)")
    parser.add_argument("--out", type=Path, default=results_path("compare_hf"))
    args = parser.parse_args()
    repeats, new_tokens = (1, 20) if args.quick else (3, 200)
    course, tokenizer = load_model(device="cpu", dtype=torch.float32)
    with tempfile.TemporaryDirectory() as folder:
        export_hf_dir(load_checkpoint(), Path(folder))
        hf = reference_model(Path(folder))
        results = {"machine": machine(), "settings": {"repeats": repeats, "new_tokens": new_tokens}}
        steps = {
            "correctness": lambda: correctness(course, hf, tokenizer),
            "decode_b1": lambda: decoding(course, hf, tokenizer, 1, new_tokens, repeats),
            "decode_b8": lambda: decoding(course, hf, tokenizer, 8, new_tokens, repeats),
            "prefill": lambda: prefill(course, hf, tokenizer, 512, repeats),
            "lora_step": lambda: lora_step(Path(folder), 16, 64, repeats),
            "load": lambda: loading(Path(folder)),
        }
        for name, run in steps.items():
            results[name] = run()
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
