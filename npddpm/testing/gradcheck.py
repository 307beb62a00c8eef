r"""Gradient checks for hand-written backward passes (float64).

Two checks, as in cs231n and JAX's ``check_vjp``:

* :func:`numerical_vjp` — centred differences of the scalar ``<f(x), v>`` element by element:
  exact up to :math:`O(h^2)` truncation and :math:`O(\varepsilon/h)` rounding; use it for
  small layers (``2·x.size`` evaluations).
* :func:`directional_vjp_check` — one random tangent ``u`` and one random cotangent ``v``:
  compare :math:`\langle u, J^\top v\rangle` (from the backward pass) with
  :math:`\langle (f(x+hu) - f(x-hu)) / 2h,\ v\rangle` (two evaluations); use it for whole
  models.

>>> import numpy as np
>>> f = lambda x: np.sin(x)
>>> x = np.linspace(-1.0, 1.0, 5); v = np.ones(5)
>>> bool(relative_error(np.cos(x) * v, numerical_vjp(f, x, v)) < 1e-9)
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["directional_vjp_check", "numerical_vjp", "relative_error"]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""Norm-wise relative error :math:`\|a - b\|_2 / \max(\|a\|_2, \|b\|_2)` (0 if both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b) / scale)


def numerical_vjp(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, v: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    r"""Centred-difference estimate of :math:`J^\top v` for ``f`` at ``x``.

    .. math:: (J^\top v)_i \approx \bigl\langle f(x + h e_i) - f(x - h e_i),\ v\bigr\rangle / 2h

    ``x`` is perturbed in place and restored, so ``f`` may close over it (e.g. a parameter
    array of a model).
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    g = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = np.sum(f(x) * v)
        flat[i] = old - h
        fm = np.sum(f(x) * v)
        flat[i] = old
        g[i] = (fp - fm) / (2 * h)
    return grad


def directional_vjp_check(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    vjp: np.ndarray,
    v: np.ndarray,
    u: np.ndarray,
    h: float = 1e-5,
) -> tuple[float, float]:
    r"""Return :math:`(\langle u, J^\top v\rangle,\ \langle (f(x+hu)-f(x-hu))/2h,\ v\rangle)`.

    ``vjp`` is the backward pass's :math:`J^\top v`. ``x`` is perturbed in place and restored.
    """
    analytic = float(np.sum(u * vjp))
    x0 = x.copy()
    x += h * u
    fp = f(x)
    x[...] = x0 - h * u
    fm = f(x)
    x[...] = x0
    numeric = float(np.sum((fp - fm) * v) / (2 * h))
    return analytic, numeric
