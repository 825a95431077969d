"""CPU thread control: run a block of small tensor work on one torch thread."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, restoring the previous setting afterwards.

    Small tensors (a tiny model, one 49k-entry logits vector) gain nothing from a second thread, and on a busy
    2-core machine the threads' synchronisation made such work up to ten times slower (measured for lessons 03, 05).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
