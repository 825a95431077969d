"""Named sampling presets and running them side by side: same prompt, same seed, one explorer per preset.

The logic behind ``widgets.PresetComparisonWidget`` (lesson 03), testable without ipywidgets.
"""
from __future__ import annotations

from course_utils.explorer import SamplingExplorer
from course_utils.sampling import SamplingConfig
from course_utils.validation import check_int

DEFAULT_PRESETS = {
    "greedy": SamplingConfig(temperature=0.0),
    "top-k 40": SamplingConfig(temperature=1.0, top_k=40),
    "top-p 0.95": SamplingConfig(temperature=1.0, top_p=0.95),
}


def compare_presets(model, tokenizer, prompt: str, presets: dict[str, SamplingConfig], seed: int = 0,
                    n_tokens: int = 20) -> dict[str, SamplingExplorer]:
    """Generate ``n_tokens`` from the same prompt and seed under each named preset; returns the explorers."""
    if not isinstance(presets, dict) or not all(isinstance(c, SamplingConfig) for c in presets.values()):
        raise TypeError(f"presets must be a dict of name -> SamplingConfig, got {type(presets).__name__}")
    if not presets:
        raise ValueError("presets must name at least one SamplingConfig, got an empty dict")
    n_tokens = check_int("n_tokens", n_tokens, minimum=1)
    explorers = {}
    for name, config in presets.items():
        explorer = SamplingExplorer(model, tokenizer, prompt, config=config, seed=seed,
                                    max_new_tokens=max(n_tokens, 1))
        explorer.generate(n_tokens)
        explorers[name] = explorer
    return explorers
