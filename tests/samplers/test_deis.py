"""DEIS (log-ρ multistep, :mod:`npddpm.samplers.deis`): its coefficients against mpmath
quadrature, order 1 against DPM-Solver-1 (= DDIM), and its refusals. The measured orders are in
``test_solver_orders.py``. Deterministic."""

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm import paths
from npddpm import samplers as S
from npddpm.analytic import GaussianMixture
from npddpm.samplers.deis import deis_coefficients

MIX = GaussianMixture([0.3, 0.7], [[1.0, -1.0], [-1.0, 0.5]], [[0.2, 0.1], [0.3, 0.05]])


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 3),
    lo=st.floats(-4.0, 4.0),
    gaps=st.lists(st.floats(0.02, 1.0), min_size=3, max_size=3),
    to_zero=st.booleans(),
)
def test_coefficients_are_the_integrals_of_the_lagrange_basis(k, lo, gaps, to_zero):
    # ∫ L_j(log ρ) dρ from ρ_i to ρ_{i+1} by 30-digit quadrature in u = log ρ (dρ = e^u du):
    # independent of the closed-form antiderivative. Relative 1e-9: the antiderivative's
    # terms are ≲ 1/min(gap)² ≈ 2500 times the result (float64 cancellation ≤ 1e-12).
    mpmath.mp.dps = 30
    u = [lo + sum(gaps[:m]) for m in range(k + 1)]  # u[0] the newest node … increasing
    nodes = [mpmath.mpf(v) for v in u[:k]]
    u_to = mpmath.mpf(lo - gaps[-1])
    rho = np.exp(np.array(u[:k]))
    got = deis_coefficients(rho, float(rho[0]), 0.0 if to_zero else float(mpmath.e**u_to))
    for j in range(k):
        def L(x, j=j):
            out = mpmath.mpf(1)
            for m in range(k):
                if m != j:
                    out *= (x - nodes[m]) / (nodes[j] - nodes[m])
            return out * mpmath.e**x

        want = mpmath.quad(L, [nodes[0], -mpmath.inf if to_zero else u_to])
        assert abs(got[j] - float(want)) <= 1e-9 * max(1.0, abs(float(want))), (j, got, want)


def test_first_order_is_dpm_solver_1():
    p = paths.VPLinear()
    x = np.random.default_rng(0).standard_normal((8, 2))
    a = S.deis(p, MIX.denoiser(p), x, steps=20, order=1)
    b = S.dpm_solver(p, MIX.denoiser(p), x, steps=20, order=1)
    assert np.max(np.abs(a - b)) <= 1e-13


def test_orders_are_checked():
    p = paths.VPLinear()
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        S.deis(p, MIX.denoiser(p), (2, 2), steps=4, order=4)
    with pytest.raises(ValueError, match="order must be"):
        S.deis(p, MIX.denoiser(p), (2, 2), steps=4, order=0)
