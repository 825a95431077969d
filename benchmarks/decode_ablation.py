"""Where decoding time goes on this CPU, and what each speed-up of the course model buys.

1. Kernels: one float32 product of a few rows against each weight shape of SmolLM2-135M, MKL (``F.linear``)
   against oneDNN (``onednn.linear``), with weights cycled through so they come from memory, not cache.
2. Ablation: greedy KV-cached decoding of the real model, batch 1 and 8: the plain model (``load_model(fast=False)``)
   and the fast one (``fast_inference.make_fast``) with each of its speed-ups switched on or off: complex-number RoPE
   (in every fast variant), oneDNN products (with separate weights only the output head is wide enough to use it),
   joined q/k/v and gate/up weights (one product instead of three, and of two), and the lean layers (grouped decoding
   attention, one-reduction RMSNorm, in-place residual adds: ``fast_inference.settings.lean_layers``).
   All variants run in turns in one process; medians are reported.
3. Profile: the share of one decoding run spent in matrix products and in attention; the weight bytes streamed per
   second at batch 1 against the streaming-read bandwidth of item 0 (the bandwidth limit of decoding).

    .venv/bin/python benchmarks/decode_ablation.py [--quick] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine_info import machine_facts, results_path

from course_utils import fast_inference, load_model, onednn
from course_utils.decoding_io import NO_EOS
from course_utils.generation import generate

PROMPT = "The history of the printing press begins in the fifteenth century, when"
SHAPES = {"k_proj / v_proj": (192, 576), "q_proj / o_proj": (576, 576), "q+k+v joined": (960, 576),
          "down_proj": (576, 1536), "gate_proj / up_proj": (1536, 576), "gate+up joined": (3072, 576),
          "output head": (49152, 576)}
READ_BANDWIDTH_BYTES = 512 * 2**20


def read_bandwidth_gb_s() -> float:
    """Bytes per second of summing a 512 MiB float32 tensor: what streaming the weights could reach."""
    data = torch.ones(READ_BANDWIDTH_BYTES // 4)
    data.sum()
    start = time.perf_counter()
    for _ in range(5):
        data.sum()
    return 5 * READ_BANDWIDTH_BYTES / (time.perf_counter() - start) / 1e9


def kernel_table(rows: int, repeats: int) -> dict:
    """GB/s of weight read by MKL and oneDNN for each shape; enough copies of a weight to overflow the caches."""
    results = {}
    for name, (out_features, in_features) in SHAPES.items():
        copies = max(2, (64 * 2**20) // (out_features * in_features * 4))
        weights = [torch.randn(out_features, in_features) for _ in range(copies)]
        x = torch.randn(rows, in_features)
        seconds = {}
        for backend, product in (("mkl", F.linear), ("onednn", onednn.linear)):
            with torch.inference_mode():
                for weight in weights:
                    product(x, weight)
                start = time.perf_counter()
                for _ in range(repeats):
                    for weight in weights:
                        product(x, weight)
            seconds[backend] = (time.perf_counter() - start) / (repeats * copies)
        gigabytes = out_features * in_features * 4 / 1e9
        results[name] = {"shape": [out_features, in_features], "mkl_gb_s": gigabytes / seconds["mkl"],
                         "onednn_gb_s": gigabytes / seconds["onednn"]}
    return results


def separate_weights(model) -> None:
    """Give every weight its own tensor again (as ``model.to(...)`` does): the model without joined products."""
    for parameter in model.parameters():
        parameter.data = parameter.data.clone()


def ablation(plain, joined, separate, tokenizer, batch: int, new_tokens: int, repeats: int) -> dict:
    """Tokens/s of each variant; ``plain`` is ``load_model(fast=False)``, ``joined`` the course model (fast),
    ``separate`` a fast copy after ``separate_weights``."""
    prompts = [tokenizer.encode(PROMPT)] * batch
    # (model, use_onednn, onednn_single_row, lean_layers): single row None = oneDNN for one row only where it
    # measured faster here
    variants = {"plain model (fast=False)": (plain, False, None, False),
                "fast, complex RoPE only": (separate, False, None, False),
                "+ oneDNN output head (forced)": (separate, True, True, False),
                "+ joined q/k/v, gate/up (MKL)": (joined, False, None, False),
                "+ lean layers only": (separate, False, None, True),
                "fast without lean layers": (joined, True, None, False),
                "all tricks forced": (joined, True, True, True),
                "fast (the course model)": (joined, True, None, True)}
    outputs, times = {}, {name: [] for name in variants}
    routing, settings = onednn.routing, fast_inference.settings

    def run(name: str) -> float:
        model, use_onednn, single_row, lean = variants[name]
        routing.enabled, routing.single_row, settings.lean_layers = use_onednn, single_row, lean
        try:
            start = time.perf_counter()
            outputs[name] = generate(model, prompts, max_new_tokens=new_tokens, eos_id=NO_EOS).tokens
            return time.perf_counter() - start
        finally:
            routing.enabled, routing.single_row, settings.lean_layers = True, None, True

    for name in variants:
        run(name)  # warm-up
    for _ in range(repeats):
        for name in variants:
            times[name].append(run(name))
    baseline = next(iter(variants))
    same = all(tokens == outputs[baseline] for tokens in outputs.values())
    speeds = {name: batch * new_tokens / statistics.median(values) for name, values in times.items()}
    return {"tokens_per_s": speeds, "speedup": {name: speed / speeds[baseline] for name, speed in speeds.items()},
            "identical_greedy_tokens_across_variants": same}


def weight_bytes(model) -> int:
    """Bytes of weights one decoding step reads: every parameter once (a tied matrix once)."""
    return sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())


def profile_share(model, tokenizer, new_tokens: int, batch: int = 1) -> dict:
    """Fraction of one decoding run's wall time spent in matrix products and in attention (``batch`` equal rows)."""
    from torch.profiler import profile

    prompt = [tokenizer.encode(PROMPT)] * batch
    generate(model, prompt, max_new_tokens=4, eos_id=NO_EOS)
    with profile() as profiler:
        start = time.perf_counter()
        generate(model, prompt, max_new_tokens=new_tokens, eos_id=NO_EOS)
        wall = time.perf_counter() - start
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) / 1e6
    products = sum(event.self_cpu_time_total for event in events
                   if event.key in ("aten::mm", "aten::addmm", "mkldnn::_linear_pointwise")) / 1e6
    attention = sum(event.self_cpu_time_total for event in events if "scaled_dot_product" in event.key) / 1e6
    return {"wall_s": wall, "operator_s": total, "matrix_product_s": products, "attention_s": attention,
            "matrix_product_share_of_wall": products / wall, "attention_share_of_wall": attention / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats (a smoke run)")
    parser.add_argument("--out", type=Path, default=results_path("decode_ablation"))
    args = parser.parse_args()
    repeats, new_tokens = (1, 10) if args.quick else (3, 100)
    results = {**machine_facts(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "new_tokens": new_tokens, "read_bandwidth_gb_s": read_bandwidth_gb_s(),
               "onednn_single_row_chosen": onednn.onednn_wins_single_row()}
    print(f"{machine_facts()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"streaming read of 512 MiB: {results['read_bandwidth_gb_s']:.1f} GB/s")
    for rows in (1, 8):
        results[f"kernels_rows{rows}"] = table = kernel_table(rows, repeats=2 if args.quick else 5)
        print(f"\nweight read speed, {rows} row(s) x weight (GB/s)\n{'weight':<24}{'shape':>14}{'MKL':>8}{'oneDNN':>8}")
        for name, row in table.items():
            print(f"{name:<24}{str(tuple(row['shape'])):>14}{row['mkl_gb_s']:>8.1f}{row['onednn_gb_s']:>8.1f}")
    plain, _ = load_model(device="cpu", dtype=torch.float32, fast=False)
    joined, tokenizer = load_model(device="cpu", dtype=torch.float32)
    separate, _ = load_model(device="cpu", dtype=torch.float32)
    separate_weights(separate)
    for batch in (1, 8):
        results[f"ablation_b{batch}"] = row = ablation(plain, joined, separate, tokenizer, batch, new_tokens, repeats)
        print(f"\ngreedy decoding, batch {batch}, {new_tokens} new tokens (tokens/s, speed-up)")
        for name, speed in row["tokens_per_s"].items():
            print(f"  {name:<36}{speed:>8.1f}{row['speedup'][name]:>7.2f}x")
        print(f"  same greedy tokens in every variant: {row['identical_greedy_tokens_across_variants']}")
    for batch in (1, 8):
        results[f"profile_b{batch}"] = share = profile_share(joined, tokenizer, new_tokens, batch)
        print(f"\nprofile, batch {batch}: {share['matrix_product_s']:.2f} s of {share['wall_s']:.2f} s wall in matrix "
              f"products ({100 * share['matrix_product_share_of_wall']:.0f}%), "
              f"{100 * share['attention_share_of_wall']:.0f}% in attention")
    course_speed = results["ablation_b1"]["tokens_per_s"]["fast (the course model)"]
    streamed = weight_bytes(joined) * course_speed / 1e9
    results["bandwidth_b1"] = {"weight_bytes": weight_bytes(joined), "streamed_gb_s": streamed,
                               "fraction_of_read_bandwidth": streamed / results["read_bandwidth_gb_s"]}
    print(f"batch 1 streams the weights at {streamed:.1f} GB/s: "
          f"{100 * streamed / results['read_bandwidth_gb_s']:.0f}% of the streaming-read bandwidth")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
