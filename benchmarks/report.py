"""Markdown tables of one machine's results files (compare_hf, decode_ablation), for benchmarks/README.md.

    .venv/bin/python benchmarks/report.py [SLUG]    # SLUG: the part after "compare_hf-"; default: this machine's
"""
from __future__ import annotations

import argparse
import json
import textwrap

from machine_info import RESULTS, results_path

TARGETS = {"decode_b1": 1.2, "decode_b8": 1.3, "prefill": 1.0}


def compare_table(results: dict) -> str:
    """The course model against transformers / PEFT: speeds, ratios and whether each target is met."""
    rows = ["| comparison | course | transformers / PEFT | ratio | target | met? |", "|---|---|---|---|---|---|",
            f"| max \\|logit difference\\| on the same weights ({results['correctness']['tokens']} tokens) | "
            f"{results['correctness']['max_abs_logit_difference']:.1e} | – | – | | |"]
    new_tokens = results["settings"]["new_tokens"]
    for key, name in (("decode_b1", f"greedy decoding, batch 1, {new_tokens} new tokens"),
                      ("decode_b8", f"greedy decoding, batch 8, {new_tokens} new tokens"),
                      ("prefill", "prefill, 512-token prompt")):
        row = results[key]
        ratio = row["course_tokens_per_s"] / row["reference_tokens_per_s"]
        rows.append(f"| {name} | {row['course_tokens_per_s']:.1f} tokens/s | {row['reference_tokens_per_s']:.1f} "
                    f"tokens/s | {ratio:.2f}× | ≥ {TARGETS[key]:.1f}× | {'yes' if ratio >= TARGETS[key] else 'no'} |")
    lora = results["lora_step"]
    time_ratio = lora["course_seconds"] / lora["reference_seconds"]
    memory_ratio = lora["course_memory_mib"] / lora["reference_memory_mib"]
    rows.append(f"| LoRA step (r=8, q and v, batch 16 × 64) | {lora['course_seconds']:.2f} s | "
                f"{lora['reference_seconds']:.2f} s | {time_ratio:.2f}× the time | ≤ 1.0× | "
                f"{'yes' if time_ratio <= 1.0 else 'no'} |")
    rows.append(f"| LoRA step memory (weights + grads + Adam + saved activations) | {lora['course_memory_mib']:.2f} MiB"
                f" | {lora['reference_memory_mib']:.2f} MiB | {memory_ratio:.2f}× | ≤ 1.0× | "
                f"{'yes' if memory_ratio <= 1.0 else 'no'} |")
    load = results["load"]
    rows.append(f"| `load_model()` cold / warm (same process) | {load['course_cold_s']:.1f} s / "
                f"{load['course_warm_s']:.2f} s | {load['reference_from_pretrained_s']:.2f} s (`from_pretrained`) | – "
                f"| warm ≤ 1.5 s | {'yes' if load['course_warm_s'] <= 1.5 else 'no'} |")
    return "\n".join(rows)


def ablation_table(results: dict) -> str:
    """Tokens per second of each fast-path variant at batch 1 and 8, and the speed-up over the plain model."""
    one, eight = results["ablation_b1"], results["ablation_b8"]
    rows = [f"| variant ({results['new_tokens']} new tokens) | batch 1 | batch 8 |", "|---|---|---|"]
    for name, speed in one["tokens_per_s"].items():
        rows.append(f"| {name} | {speed:.1f} tokens/s ({one['speedup'][name]:.2f}×) | "
                    f"{eight['tokens_per_s'][name]:.1f} tokens/s ({eight['speedup'][name]:.2f}×) |")
    same = one["identical_greedy_tokens_across_variants"] and eight["identical_greedy_tokens_across_variants"]
    bandwidth = results["bandwidth_b1"]
    profiles = " ".join(profile_sentence(results[key], batch) for batch, key in ((1, "profile_b1"), (8, "profile_b8"))
                        if key in results)
    return "\n".join(rows) + "\n\n" + textwrap.fill(
        f"Same greedy tokens in every variant: {same}. {profiles} Batch 1 streams "
        f"{bandwidth['weight_bytes'] / 2**20:.0f} MiB of weights per token at {bandwidth['streamed_gb_s']:.1f} GB/s: "
        f"{100 * bandwidth['fraction_of_read_bandwidth']:.0f} % of the {results['read_bandwidth_gb_s']:.1f} GB/s a "
        f"streaming read reaches.", 118)


def profile_sentence(share: dict, batch: int) -> str:
    """Where one profiled decoding run at ``batch`` rows spent its wall time."""
    others = share["operator_s"] - share["matrix_product_s"] - share["attention_s"]
    return (f"Profile of batch-{batch} decoding ({share['wall_s']:.2f} s wall under the profiler): matrix products "
            f"{100 * share['matrix_product_share_of_wall']:.0f} %, attention "
            f"{100 * share['attention_share_of_wall']:.0f} %, other operators {100 * others / share['wall_s']:.0f} %, "
            f"Python and dispatch between operators {100 * (1 - share['operator_s'] / share['wall_s']):.0f} %.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slug", nargs="?", help="machine slug of the results files (default: this machine)")
    args = parser.parse_args()
    slug = args.slug or results_path("compare_hf").stem.removeprefix("compare_hf-")
    for name, table in (("compare_hf", compare_table), ("decode_ablation", ablation_table)):
        path = RESULTS / f"{name}-{slug}.json"
        if path.exists():
            print(f"### {path.name}\n\n{table(json.loads(path.read_text()))}\n")
        else:
            print(f"### {path.name}: not measured on this machine\n")


if __name__ == "__main__":
    main()
