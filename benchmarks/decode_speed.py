"""KV-cached greedy decoding speed: course_utils.generate vs Hugging Face transformers' generate() on the same weights.

Batch 1, float32, a fixed number of new tokens (EOS ignored), median over repeats. Run:
    .venv/bin/python benchmarks/decode_speed.py [--new-tokens 200] [--repeats 3] [--device cpu]
The numbers depend on the machine and on what else runs on it: close other heavy processes first.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from course_utils import load_model
from course_utils.generation import NO_EOS, generate
from course_utils.weights import export_hf_dir, load_checkpoint

PROMPT = "The history of the printing press begins"


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def course_speed(device: str, new_tokens: int, repeats: int) -> tuple[float, list[int]]:
    model, tokenizer = load_model(device=device, dtype=torch.float32)
    prompt = tokenizer.encode(PROMPT)
    tokens: list[int] = []

    def run():
        tokens[:] = generate(model, [prompt], max_new_tokens=new_tokens, eos_id=NO_EOS).tokens[0]

    return new_tokens / median_seconds(run, repeats), tokens


def transformers_speed(device: str, new_tokens: int, repeats: int) -> tuple[float, list[int]] | None:
    try:
        import transformers
    except ImportError:
        print("transformers is not installed: skipping the reference side (pip install transformers to compare).")
        return None
    model, tokenizer = load_model(device=device, dtype=torch.float32)
    prompt = torch.tensor([tokenizer.encode(PROMPT)], device=device)
    with tempfile.TemporaryDirectory() as folder:
        export_hf_dir(load_checkpoint(), Path(folder))
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    tokens: list[int] = []

    def run():
        with torch.inference_mode():
            out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        tokens[:] = out[0, prompt.shape[1]:].tolist()

    print(f"transformers {transformers.__version__}")
    return new_tokens / median_seconds(run, repeats), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.new_tokens < 1 or args.repeats < 1:
        parser.error("--new-tokens and --repeats must be >= 1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, batch 1, float32, "
          f"{args.new_tokens} new tokens, median of {args.repeats}")
    speed, tokens = course_speed(args.device, args.new_tokens, args.repeats)
    print(f"course_utils.generate (KV cache, greedy): {speed:6.1f} tokens/s")
    reference = transformers_speed(args.device, args.new_tokens, args.repeats)
    if reference is not None:
        ref_speed, ref_tokens = reference
        same = sum(a == b for a, b in zip(tokens, ref_tokens))
        print(f"transformers generate() (greedy):         {ref_speed:6.1f} tokens/s")
        print(f"identical greedy tokens: {same}/{len(tokens)} (float rounding may split long greedy runs apart)")


if __name__ == "__main__":
    main()
