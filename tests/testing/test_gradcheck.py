"""The gradient-check helpers themselves, against closed-form derivatives."""

import doctest

import numpy as np

from npddpm.testing import gradcheck
from npddpm.testing.gradcheck import directional_vjp_check, numerical_vjp, relative_error


def test_docstring_examples():
    result = doctest.testmod(gradcheck)
    assert result.attempted > 0 and result.failed == 0


def test_numerical_vjp_of_a_known_jacobian():
    # f(x) = A tanh(x): Jᵀv = (1 − tanh²x) ⊙ Aᵀv. Centred differences with h = 1e-5 are
    # accurate to ~1e-10 relative here (O(h²) truncation, O(ε/h) rounding).
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3))
    x = rng.standard_normal(3)
    v = rng.standard_normal(4)
    exact = (1 - np.tanh(x) ** 2) * (a.T @ v)
    assert relative_error(numerical_vjp(lambda z: a @ np.tanh(z), x, v), exact) < 1e-9
    x0 = x.copy()
    u = rng.standard_normal(3)
    analytic, numeric = directional_vjp_check(lambda z: a @ np.tanh(z), x, exact, v, u)
    assert abs(analytic - numeric) < 1e-9 * np.sum(np.abs(u * exact))
    np.testing.assert_array_equal(x, x0)  # perturbations are undone


def test_relative_error():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0.0
    assert relative_error(np.array([1.0, 0.0]), np.array([0.0, 0.0])) == 1.0
