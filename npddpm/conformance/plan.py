"""What the checker checks: which chain entries, and the inputs of each step.

The inputs are drawn to make faults visible: x₀ uniform in [−1, 1], noise N(0, 1), model
outputs N(0, 1) with half the rows scaled by 3 (so x̂₀ leaves [−1, 1] and clipping and
thresholding act), learned-variance channels over their whole range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .adapters import Adapter

__all__ = ["MAX_ALL_STEPS", "pick_steps", "step_inputs"]

Array = np.ndarray
MAX_ALL_STEPS = 100  # chains up to this length are checked at every entry by default


def pick_steps(chain: list[int], steps: str | Sequence[int]) -> list[int]:
    """The chain entries whose steps are checked, in chain order."""
    if not isinstance(steps, str):
        wanted = {int(t) for t in steps}
        missing = wanted - set(chain)
        if missing:
            raise ValueError(f"steps: {sorted(missing)[:5]} are not in the adapter's chain")
        return [t for t in chain if t in wanted]
    if steps not in ("default", "all"):
        raise ValueError(f"steps must be 'default', 'all' or a list of timesteps, got {steps!r}")
    n = len(chain)
    if steps == "all" or n <= MAX_ALL_STEPS:
        return list(chain)
    idx = set(range(4)) | set(range(n - 4, n)) | set(np.linspace(4, n - 5, 24).astype(int).tolist())
    return [chain[i] for i in sorted(idx)]


def step_inputs(adapter: Adapter, rng: np.random.Generator, B: int, D: int) -> tuple[Array, ...]:
    """The inputs of the per-step checks: ``(x0, noise, model_output)``.

    ``x0`` is uniform on [−1, 1] and ``noise`` standard normal, both (B, D). The model output
    is (B, D) standard normals, the first B // 2 rows scaled ×3 so that clipping of x̂₀
    triggers on half of them; for a learned variance it is (B, 2D), the variance part
    uniform in the adapter's convention (interpolation v ∈ [−1, 1] for ``learned_range``,
    log σ² ∈ [−8, −2], or σ² ∈ [1e-4, 1e-2] under the diffusers profile, for ``learned``).
    """
    x0 = rng.uniform(-1, 1, (B, D))
    noise = rng.standard_normal((B, D))
    mean = rng.standard_normal((B, D))
    mean[: B // 2] *= 3.0  # large outputs so that clipping triggers on half the rows
    if adapter.var_type == "learned_range":
        var = rng.uniform(-1, 1, (B, D))
    elif adapter.var_type == "learned":
        var = (
            rng.uniform(-8, -2, (B, D))
            if adapter.profile != "diffusers"
            else rng.uniform(1e-4, 1e-2, (B, D))
        )
    else:
        var = None
    mo = mean if var is None else np.concatenate([mean, var], axis=1)
    return x0, noise, mo
