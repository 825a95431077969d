"""Old import path of the prompting helpers, kept for one release: each name is looked up in its new module.

The code now lives in ``prompt_tasks`` (tasks and task files), ``prompts`` (prompt builders), ``answers`` (answer
extraction), ``option_scoring`` (scoring options, calibration) and ``evaluation`` (evaluate, intervals, voting).
Import from those; this module is removed in the release after next.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "prompt_tasks": ("ANSWER_TYPES", "Item", "Task", "load_task", "load_tasks"),
    "prompts": ("ANSWER_MARKER", "COT_STRATEGIES", "STRATEGIES", "ZERO_SHOT_COT_TRIGGER", "Prompt", "build_prompt",
                "cot_answer", "direct_instruction", "select_examples", "user_message"),
    "answers": ("answer_line_complete", "canonical_number", "extract_answer", "extract_number", "extract_option",
                "extract_pattern", "is_correct"),
    "option_scoring": ("CONTENT_FREE_INPUTS", "calibrate_scores", "choose_option", "evaluate_options",
                       "option_scores", "score_option_batch", "score_options"),
    "evaluation": ("EvalResult", "VoteResult", "accuracy_interval", "confusion_matrix", "evaluate", "majority_vote",
                   "self_consistency"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str):
    if name in _HOME_OF:
        return getattr(importlib.import_module(f"{__package__}.{_HOME_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
