"""LoRA on a float32 base vs on a 4-bit Q4_1 base (QLoRA): weight memory, peak training memory, step time, loss.

Each variant runs in its own process (peak RSS only rises), trains LoRA r=8 on q_proj, v_proj with lesson 08's
batch (8 dates) for a few steps with the same seed, and reports:
- weights: bytes held by the model's tensors (4-bit blocks, float tensors, adapters);
- the summed parts of one step: weights + gradients + AdamW state + activations saved for backward;
- peak RSS of the training steps alone (the peak is reset after loading, via /proc/self/clear_refs, since the 4-bit
  variant is built from a float model first);
- median seconds per step (wall clock, and CPU time, which a busy shared machine disturbs less);
- the loss of every step (the two must agree: same weights).

    .venv/bin/python benchmarks/qlora_memory.py [--steps N] [--accuracy N_DATES]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine_info import machine_facts, results_path

MIB = 2**20


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1))


def run_variant(variant: str, steps: int, batch_size: int, n_accuracy: int) -> dict:
    """Train one variant in this process and return its measurements."""
    from course_utils import load_model, seed_everything
    from course_utils.chat_data import collate, encode_example
    from course_utils.datasets import SYSTEM_PROMPT, make_date_splits
    from course_utils.lora import add_lora
    from course_utils.memory import SavedTensorMeter, unique_storage_bytes
    from course_utils.qlora import quantize_model_4bit, weight_bytes
    from course_utils.reply_scoring import exact_match, greedy_answers
    from course_utils.training import train_step

    start = time.perf_counter()
    model, tokenizer = load_model(device="cpu", dtype=torch.float32)
    if variant == "q4_1":
        quantize_model_4bit(model)
    add_lora(model, ("q_proj", "v_proj"), r=8, alpha=16, seed=0)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)   # hand freed heap (the replaced float weights) back to the OS
    load_seconds = time.perf_counter() - start
    load_peak = _status_kib("VmHWM") * 1024
    Path("/proc/self/clear_refs").write_text("5")   # reset the peak: from here on, training only
    train_examples, test_examples = make_date_splits(n_train=1000, n_test=max(n_accuracy, 1), seed=0)
    data = [encode_example(tokenizer, e.prompt, e.answer, system=SYSTEM_PROMPT) for e in train_examples]
    order = torch.randperm(len(data), generator=seed_everything(0)).tolist()
    batches = [collate([data[i] for i in order[s * batch_size:(s + 1) * batch_size]], tokenizer.eos_id)
               for s in range(steps)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    keys = {(str(t.device), t.untyped_storage().data_ptr()) for t in [*model.parameters(), *model.buffers()]}
    losses, seconds, cpu_seconds, activations = [], [], [], 0
    model.train()
    for step, (ids, labels) in enumerate(batches):
        begin, cpu_begin = time.perf_counter(), time.process_time()
        if step == 0:
            with SavedTensorMeter(exclude=keys) as meter:
                losses.append(train_step(model, optimizer, ids, labels, max_grad_norm=1.0))
            activations = meter.nbytes
        else:
            losses.append(train_step(model, optimizer, ids, labels, max_grad_norm=1.0))
        seconds.append(time.perf_counter() - begin)
        cpu_seconds.append(time.process_time() - cpu_begin)   # CPU time: less disturbed by other processes
    model.eval()
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    parts = {"weights": sum(weight_bytes(model).values()), "gradients": unique_storage_bytes(params),
             "optimizer state": unique_storage_bytes(state), "activations": activations}
    result = {"variant": variant, "weight_bytes": weight_bytes(model), "parts": parts,
              "summed_parts": sum(parts.values()), "peak_rss_training": _status_kib("VmHWM") * 1024,
              "peak_rss_loading": load_peak, "load_seconds": load_seconds, "losses": losses,
              "seconds_per_step": statistics.median(seconds[1:] or seconds),
              "cpu_seconds_per_step": statistics.median(cpu_seconds[1:] or cpu_seconds),
              "tokens_per_batch": [int(ids.numel()) for ids, _ in batches]}
    if n_accuracy:
        answers = greedy_answers(model, tokenizer, [e.prompt for e in test_examples], system=SYSTEM_PROMPT)
        result["accuracy"] = exact_match(answers, [e.answer for e in test_examples])
        result["n_accuracy"] = n_accuracy
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accuracy", type=int, default=0, help="held-out dates scored after training (0: none)")
    parser.add_argument("--variant", choices=("fp32", "q4_1"), help="run one variant here and print its JSON")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1 or args.accuracy < 0:
        parser.error("--steps and --batch-size must be >= 1, --accuracy >= 0")
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.batch_size, args.accuracy)))
        return
    runs = {}
    for variant in ("fp32", "q4_1"):
        command = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--accuracy", str(args.accuracy)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs[variant] = json.loads(output.strip().splitlines()[-1])
    fp32, q4 = runs["fp32"], runs["q4_1"]
    gap = max(abs(a - b) for a, b in zip(fp32["losses"], q4["losses"]))
    assert gap < 1e-3, f"losses differ by {gap}: the two bases should hold the same weights"
    facts = machine_facts()
    print(f"CPU: {facts}, torch {torch.__version__}, {torch.get_num_threads()} threads; LoRA r=8 on q,v; "
          f"{args.steps} steps of {args.batch_size} dates")
    for name, run in runs.items():
        parts = ", ".join(f"{k} {v / MIB:.1f}" for k, v in run["parts"].items())
        print(f"{name:>5}: weights {run['parts']['weights'] / MIB:6.1f} MiB · summed parts "
              f"{run['summed_parts'] / MIB:6.1f} MiB ({parts}) · peak RSS training "
              f"{run['peak_rss_training'] / MIB:6.0f} MiB · {run['seconds_per_step']:.2f} s/step "
              f"({run['cpu_seconds_per_step']:.2f} CPU s)")
    print(f"largest loss difference over {args.steps} steps: {gap:.1e}")
    out = results_path("qlora_memory")
    out.write_text(json.dumps({**facts, "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "steps": args.steps, "batch_size": args.batch_size,
                               "lora": "r=8, alpha=16, q_proj v_proj",
                               "max_loss_difference": gap, "runs": runs}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
