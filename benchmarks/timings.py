"""What a learner waits for at the sampling explorer, against its target: the redraw after a slider move.

This was once a loose assert in the unit tests; timings belong here, where they are measured on a quiet machine and
kept per CPU model instead of failing a test on a busy one. Load times: benchmarks/load_time.py.

    .venv/bin/python benchmarks/timings.py [--rounds N]     # also part of `make bench`
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
from machine_info import machine_facts, results_path

from course_utils import load_model
from course_utils.explorer import SamplingExplorer
from course_utils.sampling import SamplingConfig
from course_utils.widgets import ExplorerWidget

TARGETS = {"explorer redraw ms": 300.0}


def redraw_milliseconds(rounds: int) -> list[float]:
    model, tok = load_model(device="cpu")
    explorer = SamplingExplorer(model, tok, "Once upon a time, in a small village,",
                                config=SamplingConfig(temperature=0.7, top_p=0.95), seed=0, max_new_tokens=30)
    widget = ExplorerWidget(explorer, generate_n=3)
    times = []
    for step in range(rounds):
        widget.temperature.value = 0.5 + 0.1 * (step % 10)  # a slider move redraws chart, counts and text
        times.append(widget.last_redraw_ms)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    measured = {"explorer redraw ms": statistics.median(redraw_milliseconds(args.rounds))}
    facts = machine_facts()
    print(f"CPU: {facts}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, value in measured.items():
        verdict = "meets" if value <= TARGETS[name] else "MISSES"
        print(f"{name:>22}: median {value:8.2f}  ({verdict} the target {TARGETS[name]:g})")
    out = results_path("timings")
    out.write_text(json.dumps({**facts, "torch": torch.__version__, "rounds": args.rounds,
                               "median": measured, "targets": TARGETS}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
