"""The LM head on the positions a loss reads, and nowhere else.

A SmolLM2-135M generator has a 49k-token vocabulary, so projecting one position through its head costs about a
fifth of the whole forward. The generator's losses read few positions: a doc -> query pair or a DPO completion has
~20 labelled tokens after a ~200-token document, a PPO response 24. Three places ran the head on every position:

- trl's fused LM head (SFT, DPO, GRPO) scores only labelled positions where Triton runs, and every position
  elsewhere, to keep tile shapes fixed for compilers on accelerators like Neuron. On a CPU in eager mode nothing is
  compiled, so `compact_fused_head` makes trl take its Triton-device path there (its torch tiles do the work).
- ragtune's PPO asks the model for the response's logits only (`takes_logits_to_keep`, an int).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def takes_logits_to_keep(model) -> bool:
    """True when the model's forward takes `logits_to_keep` (an int: logits of the last N positions only)."""
    return "logits_to_keep" in inspect.signature(type(_base(model)).forward).parameters


@contextmanager
def compact_fused_head() -> Iterator[bool]:
    """While open, trl's fused LM head projects only the labelled positions on CPU too (yields whether it could:
    False on a trl without that switch, where every position is scored as before). The values and gradients are
    the same either way (tests/unit/test_lm_head.py); only the head's work changes."""
    try:
        from trl.trainer import utils as trl_utils

        original = trl_utils._use_triton
    except (ImportError, AttributeError):
        yield False
        return

    def compact_here(device) -> bool:
        return device.type == "cpu" or original(device)

    # trl.trainer.utils reads this name only to choose compact scoring; the kernels' own module keeps its copy, so
    # the CPU still runs trl's torch tiles, not Triton
    trl_utils._use_triton = compact_here
    try:
        yield True
    finally:
        trl_utils._use_triton = original
