"""Hypothesis profiles.

``ci`` (default): no deadline (shared 2-core machines have noisy timings), derandomized so
every run draws the same examples (a reproducible seed), 60 examples per test.
``thorough``: 1000 examples, random seed. ``dev``: 20 examples, for quick iteration.
Select with the environment variable ``NPDDPM_HYPOTHESIS_PROFILE``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=60,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("NPDDPM_HYPOTHESIS_PROFILE", "ci"))
