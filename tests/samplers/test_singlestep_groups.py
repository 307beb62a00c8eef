"""Singlestep DPM-Solver(++) on given levels, in groups (``dpm_solver(method="singlestep",
orders=…)``; :mod:`npddpm.samplers._singlestep`).

Checked against independent things: the existing singlestep code (its own intermediate levels
at the λ-midpoint, a different loop) on the same points; diffusers' own order-list rule on
fresh schedulers; and the exact flow map (measured order). Deterministic: no random
tolerance; the margin on a fitted order is that of ``test_solver_orders.py`` (0.3)."""

import numpy as np
import pytest

from npddpm import paths
from npddpm import samplers as S
from npddpm.conformance import convergence_order
from npddpm.samplers._singlestep import diffusers_groups, group_lengths
from npddpm.spacing import noise_levels

from .test_solver_orders import MARGIN, MIX, STEPS

P = paths.VPLinear()


@pytest.mark.parametrize("algorithm", ["dpmsolver++", "dpmsolver"])
@pytest.mark.parametrize("final", ["min", "zero"])
def test_groups_of_two_equal_the_midpoint_singlestep(algorithm, final):
    # 2S with r₁ = ½ places its intermediate level at the λ-midpoint of each step; the grouped
    # code given those midpoints as levels must do the same arithmetic up to regrouping
    # (float64, |x| ≲ 3: 1e-12 is ~2000 ulp, far below any wrong term, ~1e-3 at N = 12).
    N = 12
    t = noise_levels(P, N, "log_snr")
    lam = P.lam(t)
    mids = P.t_of_lam((lam[:-1] + lam[1:]) / 2)
    fine = np.empty(2 * N + 1)
    fine[0::2], fine[1::2] = t, mids
    if final == "zero":  # the solvers append σ = 0; the last step (to it) is x̂₀ in both
        fine, t = fine[:-2], t[:-1]
        groups = [2] * (N - 1) + [1]
    else:
        groups = [2] * N
    x_T = np.random.default_rng(0).standard_normal((16, 2))
    den = MIX.denoiser(P)
    kw = {"method": "singlestep", "algorithm": algorithm, "final": final}
    if algorithm == "dpmsolver":
        kw["t_max"] = float(t[0])
    ref = S.dpm_solver(P, den, x_T, order=2, spacing=t, **kw)
    got = S.dpm_solver(P, den, x_T, order=2, spacing=fine, orders=groups, **kw)
    assert np.max(np.abs(got - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref)))
    # a wrong grouping is visible: all first order on the same levels
    first = S.dpm_solver(P, den, x_T, order=2, spacing=fine, orders=[1] * sum(groups), **kw)
    assert np.max(np.abs(first - ref)) > 1e-4


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_diffusers_groups_follow_its_order_list(order, lower_order_final, final):
    diffusers = pytest.importorskip("diffusers")
    import warnings

    for n in range(1, 61):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = diffusers.DPMSolverSinglestepScheduler(
                solver_order=order, lower_order_final=lower_order_final,
                final_sigmas_type=final,
            )  # fmt: skip
            s.set_timesteps(n)
        assert diffusers_groups(n, order, lower_order_final, final == "zero") == group_lengths(
            s.order_list
        ), (n, s.order_list)


@pytest.mark.parametrize(
    "kw",
    [
        {"order": 2},
        {"order": 2, "solver_type": "heun"},
        {"order": 2, "algorithm": "dpmsolver"},
        {"order": 2, "algorithm": "dpmsolver", "solver_type": "heun"},
    ],
)
def test_grouped_second_order_converges_at_two(kw):
    r = convergence_order(S.dpm_solver, P, MIX, steps=STEPS, n=16, method="singlestep",
                          orders="diffusers", **kw)  # fmt: skip
    assert r.agrees(2, MARGIN), r.table()


@pytest.mark.parametrize(
    "kw",
    [{}, {"solver_type": "heun"}, {"algorithm": "dpmsolver"}],
)
def test_grouped_third_order_converges_at_three(kw):
    # Pre-asymptotic below: data-prediction 3S measures 2.28 on N = 27…156 and 2.64 on
    # 81…453 (npddpm's own 3S on the same number of levels: 2.14, 2.9), 2.88 on 321…906.
    steps = (321, 453, 642, 906)  # multiples of 3: whole groups, lower_order_final off
    r = convergence_order(S.dpm_solver, P, MIX, steps=steps, n=16, method="singlestep",
                          orders="diffusers", lower_order_final=False, order=3, **kw)  # fmt: skip
    assert r.agrees(3, MARGIN), r.table()


def test_orders_are_checked():
    den = MIX.denoiser(P)
    with pytest.raises(ValueError, match="orders= groups the levels of method='singlestep'"):
        S.dpm_solver(P, den, (2, 2), steps=4, orders=[2, 2])
    with pytest.raises(ValueError, match="summing to the 5 steps"):
        S.dpm_solver(P, den, (2, 2), steps=4, method="singlestep", orders=[2, 1])
    with pytest.raises(ValueError, match="orders must be 'diffusers'"):
        S.dpm_solver(P, den, (2, 2), steps=4, method="singlestep", orders="uniform")
    with pytest.raises(ValueError, match="1, 2 or 3"):
        S.dpm_solver(P, den, (2, 2), steps=4, method="singlestep", orders=[4])
    with pytest.raises(ValueError, match="within a group"):
        group_lengths([1, 3])
