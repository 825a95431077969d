"""Import of the reference libraries (transformers, peft) that some tests compare the course code against.

Without them those tests skip, with the command that installs them, unless COURSE_REQUIRE_REFERENCE=1 (set by
.ci/run), where a missing reference library fails the run: CI must prove the course agrees with its references.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def import_reference(name: str) -> ModuleType:
    """``import name``, or skip (fail under COURSE_REQUIRE_REFERENCE=1) with the command that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        message = f"this reference check needs {name!r} ({error}); install it with `pip install -e '.[dev]'`"
        if os.environ.get("COURSE_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"COURSE_REQUIRE_REFERENCE=1 but {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)
