"""npddpm's solvers against another implementation: diffusers 0.42.1's schedulers.

Both are driven by the same exact model (the mixture oracle on the path built from
diffusers' own ᾱ, upcast to float64) through whole 20-step loops on diffusers' own timestep
lists, with diffusers' state in float64 (its σ tables stay float32). Tolerance 1e-5:
diffusers' float32 σ and λ tables carry relative rounding ≈ 6e-8 per entry, and a 20-step
loop on O(1) states amplifies it to about 1e-6 (measured 1.2e-6 at worst); 1e-5 leaves room
for other BLAS/CPU rounding while a wrong coefficient is visible: the 3M update with the
Taylor D₂ weight instead of diffusers' differs from it by 0.06 (ε) and 0.77 (x₀), ≥ 6000×.
"""

import numpy as np
import pytest

from npddpm import Schedule, paths
from npddpm import samplers as S
from npddpm.analytic import GaussianMixture

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

MIX = GaussianMixture([0.3, 0.7], [[1.0, -1.0], [-1.0, 0.5]], [[0.2, 0.1], [0.3, 0.05]])
X_T = np.random.default_rng(0).standard_normal((8, 2))
TOL = 1e-5
CFG = {"num_train_timesteps": 1000, "beta_schedule": "linear"}


def _run(sched, interpolation="log_alpha", steps=20):
    """diffusers' loop with the oracle; returns its output, the path, the oracle, timesteps."""
    sched.set_timesteps(steps)
    ab = sched.alphas_cumprod.double().numpy()
    schedule = Schedule(1 - np.concatenate([[ab[0]], ab[1:] / ab[:-1]]))
    p = paths.DiscreteVP(schedule, interpolation)
    oracle = MIX.denoiser(p)
    x = torch.tensor(X_T) * sched.init_noise_sigma
    for t in sched.timesteps:
        out = oracle(sched.scale_model_input(x, t).numpy(), np.full(len(X_T), float(t)))
        x = sched.step(torch.tensor(out), t, x).prev_sample
    return x.numpy(), p, oracle, sched.timesteps.numpy().astype(np.float64)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # algorithm_type="dpmsolver" is deprecated
@pytest.mark.parametrize("algorithm", ["dpmsolver++", "dpmsolver"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_dpm_solver_multistep(algorithm, order):
    sched = diffusers.DPMSolverMultistepScheduler(
        **CFG, solver_order=order, algorithm_type=algorithm, final_sigmas_type="sigma_min"
    )
    ref, p, oracle, ts = _run(sched)
    # final_sigmas_type="sigma_min": the last step lands on the table's first level, t = 0
    kw = {"spacing": np.append(ts, 0.0), "final": "min", "order": order, "algorithm": algorithm}
    mine = S.dpm_solver(p, oracle, X_T, third_order="diffusers", **kw)
    assert np.max(np.abs(mine - ref)) <= TOL
    if order == 3:
        taylor = S.dpm_solver(p, oracle, X_T, **kw)
        assert np.max(np.abs(taylor - ref)) >= 1000 * TOL


@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc(order):
    sched = diffusers.UniPCMultistepScheduler(**CFG, solver_order=order, final_sigmas_type="zero")
    ref, p, oracle, ts = _run(sched)
    mine = S.unipc(p, oracle, X_T, spacing=ts, order=order)
    assert np.max(np.abs(mine - ref)) <= TOL


def test_euler_discrete():
    # diffusers' Euler interpolates σ̃ linearly between integer timesteps, keeps σ̃ (up to
    # 157 here) in float32, one ulp ≈ 1.5e-5, and steps the VE-scaled state x̃ = x/α of that
    # size: its rounding reaches 2.4e-5 on x₀ (measured); 1e-4 is about 7 ulps of σ̃_max
    ref, p, oracle, ts = _run(diffusers.EulerDiscreteScheduler(**CFG), interpolation="sigma")
    assert np.max(np.abs(S.euler(p, oracle, X_T, spacing=ts) - ref)) <= 1e-4
