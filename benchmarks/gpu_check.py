"""The GPU path of lessons 07-08 on a SmolLM2-135M-shaped model with random weights, in one short script.

Speed and memory do not depend on the weights' values, so the script needs no weights, no network and nothing but
torch and this repository's ``course_utils`` (no gguf, papermill or jupyter): it runs on a lent GPU machine that has
its own Python. It measures

- bfloat16 decoding speed at batch 1 and 8 (``course_utils.generation.generate``, greedy, no early stop);
- one LoRA training step (r = 8 on q and v) under bfloat16 autocast, with the memory accounting of lessons 07/08
  (weights, gradients, Adam state, activations, autocast's weight copies) beside ``torch.cuda.max_memory_allocated``;
- the same for one full fine-tuning step;
- host synchronisation while decoding: ``torch.cuda.set_sync_debug_mode("error")`` around a short greedy decode of
  the model's own forward pass with its KV cache (nothing read back: it must pass once the per-step syncs are gone),
  and the number of synchronising calls per step of ``generate`` (``"warn"`` mode, counted over two lengths).

It prints one table and writes the numbers as JSON to ``--out``.

    python benchmarks/gpu_check.py                       # CUDA, full size (about a minute on a recent GPU)
    python benchmarks/gpu_check.py --device cpu --small  # the same code on a tiny model (the unit test runs this)
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import json
import platform
import sys
import time
import traceback
import types
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# Third-party modules that course_utils imports at module level but that this script never uses (adapter files,
# progress bars). A GPU machine with only torch may lack them. numpy is never replaced (torch itself probes for it):
# without numpy, course_utils.seeding (numpy's seeding, imported by training.py for train()) is replaced instead.
UNUSED_DEPENDENCIES = ("safetensors", "safetensors.torch", "tqdm", "tqdm.auto")


def _placeholder(name: str) -> types.ModuleType:
    """A stand-in for a missing module: importing names from it works, using them raises a clear ImportError."""

    def missing(*args, **kwargs):
        raise ImportError(f"{name} is not installed; gpu_check.py replaced it by a placeholder because it never "
                          f"needs it")

    def attribute(attribute_name: str):  # PEP 562: any public name is the function that raises
        if attribute_name.startswith("__"):
            raise AttributeError(attribute_name)
        return missing

    module = types.ModuleType(name)
    module.__getattr__ = attribute
    module.__path__ = []  # a package, so that e.g. ``safetensors.torch`` can sit below it
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)  # others probe with find_spec
    return module


def import_course_utils() -> list[str]:
    """Make ``course_utils`` importable with nothing but torch; return the modules replaced by placeholders.

    With every dependency installed this is a plain import. Otherwise the package is registered without running
    its ``__init__`` (which loads the GGUF/tokenizer stack for ``load_model``), and each missing module of
    ``UNUSED_DEPENDENCIES`` gets a placeholder (and ``course_utils.seeding`` when numpy is missing).
    """
    if str(ROOT) not in sys.path:  # run from a plain checkout, without installing the package
        sys.path.insert(0, str(ROOT))
    try:
        importlib.import_module("course_utils")
        return []
    except ImportError:
        pass
    package = types.ModuleType("course_utils")
    package.__path__ = [str(ROOT / "course_utils")]
    package.__file__ = str(ROOT / "course_utils" / "__init__.py")
    sys.modules["course_utils"] = package
    replaced = []
    for name in UNUSED_DEPENDENCIES:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = _placeholder(name)
            replaced.append(name)
    try:
        importlib.import_module("numpy")
    except ImportError:
        sys.modules["course_utils.seeding"] = _placeholder("course_utils.seeding (needs numpy)")
        replaced.append("course_utils.seeding")
    return replaced


REPLACED_MODULES = import_course_utils()

from course_utils.config import ModelConfig  # noqa: E402
from course_utils.decoding_io import NO_EOS  # noqa: E402
from course_utils.fast_inference import make_fast  # noqa: E402
from course_utils.generation import generate  # noqa: E402
from course_utils.lora import add_lora  # noqa: E402
from course_utils.memory import MIB, MemoryReport, measure_training_step  # noqa: E402
from course_utils.model import LlamaModel  # noqa: E402
from course_utils.training import masked_lm_loss  # noqa: E402

SMALL_CONFIG = ModelConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                           max_seq_len=256, name="gpu-check-small")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (so wall-clock timings are honest)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(config: ModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> LlamaModel:
    """A randomly initialised model, created directly on ``device`` and cast to ``dtype``."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaModel(config)
    model.to(dtype=dtype)
    return make_fast(model)  # what load_model() applies for inference (training takes the plain path)


def random_ids(config: ModelConfig, batch: int, tokens: int, device: torch.device, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, tokens), generator=generator).to(device)


def decode_speed(model: LlamaModel, batch: int, prompt_tokens: int, new_tokens: int) -> dict:
    """Greedy ``generate`` of ``new_tokens`` tokens per row (prefill included in the time), after a warm-up run."""
    prompts = random_ids(model.config, batch, prompt_tokens, model.device, seed=batch).tolist()
    generate(model, prompts, max_new_tokens=2, eos_id=NO_EOS)  # warm-up: kernels, allocator, caches
    sync(model.device)
    start = time.perf_counter()
    result = generate(model, prompts, max_new_tokens=new_tokens, eos_id=NO_EOS)
    sync(model.device)
    seconds = time.perf_counter() - start
    produced = sum(len(row) for row in result.tokens)
    if produced != batch * new_tokens:
        raise RuntimeError(f"expected {batch * new_tokens} new tokens, got {produced}")
    return {"batch": batch, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "seconds": seconds,
            "tokens_per_s": produced / seconds, "ms_per_step": 1000 * seconds / new_tokens}


def _report_dict(report: MemoryReport) -> dict:
    parts = {name: round(value, 3) for name, value in report.mib().items()}
    return {"parts_mib": parts, "sum_of_parts_mib": round(report.total / MIB, 3),
            "cuda_max_memory_allocated_mib": None if report.cuda_peak is None else round(report.cuda_peak / MIB, 3)}


def training_step(config: ModelConfig, device: torch.device, batch: int, tokens: int, lora: bool) -> dict:
    """One AdamW step of a float32 model under bfloat16 autocast, measured after a warm-up step.

    ``lora``: LoRA r = 8, alpha = 16 on q and v (the base frozen), else full fine-tuning.
    """
    model = build_model(config, device, torch.float32).train()
    if lora:
        add_lora(model, targets=("q_proj", "v_proj"), r=8, alpha=16)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    ids = random_ids(config, batch, tokens, device, seed=1)

    def run_loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):  # the CUDA path of lessons 07/08, on any device
            return masked_lm_loss(model(ids), ids)

    measure_training_step(model, run_loss, optimizer)  # warm-up (and Adam state created)
    sync(device)
    start = time.perf_counter()
    report = measure_training_step(model, run_loss, optimizer)
    sync(device)
    seconds = time.perf_counter() - start
    return {"kind": "LoRA r=8 (q, v)" if lora else "full fine-tuning", "batch": batch, "tokens": tokens,
            "trained_parameters": sum(p.numel() for p in trained), "seconds": seconds, **_report_dict(report)}


def greedy_forward_decode(model: LlamaModel, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding with the KV cache that never reads a value back to the host (argmax stays on the device)."""
    cache = model.new_cache(ids.shape[0], ids.shape[1] + new_tokens)
    tokens = []
    with torch.inference_mode():
        logits = model(ids, cache=cache, last_only=True)[:, -1]
        for step in range(new_tokens):
            token = logits.argmax(dim=-1, keepdim=True)
            tokens.append(token)
            if step + 1 < new_tokens:
                logits = model(token, cache=cache)[:, -1]
    return torch.cat(tokens, dim=1)


def _sync_warnings(run: Callable[[], object]) -> list[str]:
    """Where (``file:line``) each synchronising CUDA call of ``run()`` came from, in ``"warn"`` sync-debug mode."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def _course_frame(error: BaseException) -> str | None:
    """The innermost ``course_utils`` line of the error's traceback (where the synchronising call was made)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "course_utils" in f.filename]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno} ({frames[-1].line})" if frames else None


def sync_check(model: LlamaModel, new_tokens: int) -> dict:
    """Host synchronisation while decoding (CUDA only).

    ``forward_decode``: ``set_sync_debug_mode("error")`` around ``greedy_forward_decode``; passes when the model's
    forward pass never synchronises. ``generate_syncs_per_step``: synchronising calls per decode step of
    ``generate`` (greedy, no EOS), the difference between two lengths, so the fixed calls at entry and exit (the
    final ``.tolist()``) cancel out.
    """
    if model.device.type != "cuda":
        return {"status": "skipped", "reason": f"sync debug mode needs CUDA (device is {model.device.type})"}
    ids = random_ids(model.config, 2, 8, model.device, seed=3)
    greedy_forward_decode(model, ids, 2)  # warm-up outside the check: first calls may allocate and sync
    sync(model.device)
    result: dict = {}
    torch.cuda.set_sync_debug_mode("error")
    try:
        greedy_forward_decode(model, ids, new_tokens)
        result["forward_decode"] = {"status": "pass", "error": None}
    except RuntimeError as error:
        result["forward_decode"] = {"status": "fail", "error": str(error).splitlines()[0][:300],
                                    "where": _course_frame(error)}
    finally:
        torch.cuda.set_sync_debug_mode("default")
    prompts = ids.tolist()
    short, long = 4, 4 + new_tokens
    sites = {n: _sync_warnings(lambda n=n: generate(model, prompts, max_new_tokens=n, eos_id=NO_EOS))
             for n in (short, long)}
    result["generate_syncs"] = {str(n): len(found) for n, found in sites.items()}
    result["generate_syncs_per_step"] = (len(sites[long]) - len(sites[short])) / (long - short)
    result["generate_sync_sites"] = dict(Counter(sites[long]).most_common())  # calls per source line, long run
    result["status"] = "pass" if result["forward_decode"]["status"] == "pass" else "fail"
    return result


def _section(results: dict, name: str, run: Callable[[], object]) -> None:
    """Run one measurement; an exception is recorded (with its traceback's last line) instead of ending the script."""
    start = time.perf_counter()
    try:
        results[name] = run()
    except Exception as error:  # noqa: BLE001 - one broken section must not hide the others' numbers
        traceback.print_exc()
        results[name] = {"status": "error", "error": f"{type(error).__name__}: {error}"[:500]}
    print(f"[gpu-check] {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def inference_checks(results: dict, config: ModelConfig, device: torch.device, small: bool) -> None:
    """Decoding speed at batch 1 and 8 and the sync check, on one bfloat16 model (freed when this returns)."""
    prompt_tokens, new_tokens = (4, 4) if small else (32, 128)
    model = build_model(config, device, torch.bfloat16).eval()
    results["parameters"] = sum(p.numel() for p in model.parameters())
    for batch in (1, 8):
        _section(results, f"decode_batch_{batch}", lambda b=batch: decode_speed(model, b, prompt_tokens, new_tokens))
    _section(results, "sync_check", lambda: sync_check(model, new_tokens=4 if small else 16))


def _free(device: torch.device) -> None:
    """Hand cached blocks back, so that each step's peak starts from what is really in use."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _fmt(value: float | None, spec: str = ",.1f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: dict) -> str:
    """The results as one plain-text table."""
    rows = [("device", results["device_name"]), ("torch", results["torch"]), ("model", results["model"])]
    for key in ("decode_batch_1", "decode_batch_8"):
        entry = results.get(key, {})
        if "tokens_per_s" in entry:
            rows.append((f"bf16 decode, batch {entry['batch']}",
                         f"{entry['tokens_per_s']:,.0f} tokens/s ({entry['ms_per_step']:.1f} ms/step, "
                         f"{entry['new_tokens']} new tokens)"))
        else:
            rows.append((key, f"ERROR {entry.get('error')}"))
    for key in ("lora_step", "full_step"):
        entry = results.get(key, {})
        if "parts_mib" not in entry:
            rows.append((key, f"ERROR {entry.get('error')}"))
            continue
        head = f"{entry['kind']}, batch {entry['batch']} x {entry['tokens']} (autocast bf16)"
        rows.append((head, f"{entry['seconds'] * 1000:,.0f} ms/step, {entry['trained_parameters']:,} trained"))
        for part, mib in entry["parts_mib"].items():
            rows.append((f"  {part}", f"{mib:,.1f} MiB"))
        rows.append(("  sum of the parts", f"{entry['sum_of_parts_mib']:,.1f} MiB"))
        rows.append(("  torch.cuda.max_memory_allocated", f"{_fmt(entry['cuda_max_memory_allocated_mib'])} MiB"))
    entry = results.get("sync_check", {})
    if entry.get("status") in ("pass", "fail"):
        forward = entry["forward_decode"]
        rows.append(("sync debug 'error': forward decode", forward["status"].upper()
                     + (f" ({forward['error']} at {forward.get('where')})" if forward["error"] else "")))
        rows.append(("syncs per generate() step (no EOS)", f"{entry['generate_syncs_per_step']:g}"))
        sites = ", ".join(f"{site} x{count}" for site, count in entry["generate_sync_sites"].items())
        rows.append(("  synchronising lines (long run)", sites or "none"))
    else:
        rows.append(("sync debug check", f"{entry.get('status', 'missing')}: "
                                         f"{entry.get('reason') or entry.get('error')}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--small", action="store_true", help="a tiny model and few tokens (seconds on a CPU)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json",
                        help="where the JSON results go")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the sync check fails too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        raise SystemExit(f"gpu-check: --device {args.device!r} is not a device name ({error})") from None
    if device.type not in ("cuda", "cpu"):
        raise SystemExit(f"gpu-check: --device must be cuda, cuda:N or cpu, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"gpu-check: this torch ({torch.__version__}) sees no CUDA GPU; "
                         f"run with --device cpu (add --small for a quick run) to check the code path on a CPU")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    config = SMALL_CONFIG if args.small else ModelConfig()
    train_batch, train_tokens = (2, 16) if args.small else (8, 256)
    results: dict = {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device": str(device), "torch": torch.__version__, "model": f"{config.name} (random weights)",
        "config": config.to_dict(), "small": args.small, "placeholder_modules": REPLACED_MODULES}
    start = time.perf_counter()
    inference_checks(results, config, device, args.small)
    for name, lora in (("lora_step", True), ("full_step", False)):
        _free(device)
        _section(results, name, lambda lora=lora: training_step(config, device, train_batch, train_tokens, lora))
    results["seconds"] = time.perf_counter() - start
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results written to {args.out} ({results['seconds']:.0f} s)")
    errors = [name for name, entry in results.items() if isinstance(entry, dict) and entry.get("status") == "error"]
    failed = args.strict and results.get("sync_check", {}).get("status") == "fail"
    return 1 if errors or failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
