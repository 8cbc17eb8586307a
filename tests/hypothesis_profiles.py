"""Hypothesis profiles for the reader fuzz tests: a bounded run in `make test`, a long one in `make fuzz`.

HYPOTHESIS_PROFILE=fuzz pytest tests/fuzz      # what `make fuzz` runs
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": 5000,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "derandomize": False,
    "print_blob": True,
}
settings.register_profile("default", max_examples=40, **_COMMON)
settings.register_profile("fuzz", max_examples=3000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
