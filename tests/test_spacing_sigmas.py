"""``npddpm.spacing.diffusers_sigmas`` against diffusers' own ``EulerDiscreteScheduler``:
the same float32 timesteps and sigmas over every spacing, σ family, final-σ type, both
interpolations and a range of N, quirks included (``docs/FINDINGS.md`` §1, §9)."""

import itertools

import numpy as np
import pytest

from npddpm.spacing import diffusers_sigmas

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

FAMILIES = ["plain", "karras", "exponential", "beta"]
CASES = [
    c
    for c in itertools.product(
        ["linspace", "leading", "trailing"], FAMILIES, ["zero", "sigma_min"],
        ["linear", "log_linear"], [1, 2, 7, 20, 50, 61],
    )
    if not (c[3] == "log_linear" and c[1] != "plain")
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("spacing,family,final,interp,N", CASES)
def test_diffusers_sigmas_equal_diffusers(spacing, family, final, interp, N):
    flags = {f"use_{family}_sigmas": True} if family != "plain" else {}
    kw = {"timestep_spacing": spacing, "final_sigmas_type": final, "interpolation_type": interp,
          "steps_offset": 1 if spacing == "leading" else 0, **flags}
    s = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000,
                                         beta_schedule="scaled_linear", **kw)
    s.set_timesteps(N)
    ts, sig = diffusers_sigmas(s.alphas_cumprod.numpy(), N, **kw)
    assert ts.shape == tuple(s.timesteps.shape) and sig.shape == tuple(s.sigmas.shape)
    # float32 throughout: torch's and NumPy's float32 power may differ by one ulp (6e-8) in the
    # table, and log_linear's float32 torch.linspace of logs, then exp, by a few ulp more
    # (seen 8.6e-7); timesteps from the log-σ inverse inherit that, at t ≤ 999: atol 2e-4
    rtol = 2e-6 if interp == "log_linear" else 4e-7
    np.testing.assert_allclose(ts, s.timesteps.numpy(), rtol=2e-6, atol=2e-4)
    np.testing.assert_allclose(sig, s.sigmas.numpy(), rtol=rtol, atol=0)


def test_log_linear_quirk_is_reproduced():
    s = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, interpolation_type="log_linear")
    s.set_timesteps(10)
    ts, sig = diffusers_sigmas(s.alphas_cumprod.numpy(), 10, interpolation_type="log_linear")
    assert (ts.size, sig.size) == (10, 12)
