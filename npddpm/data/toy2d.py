r"""The 2-D toy datasets, each with a sampler and its exact density.

Every set is generated with NumPy from a ``numpy.random.Generator``. The densities are exact:
in closed form for the Gaussian mixtures, the circles (a von Mises–type Bessel integral) and the
checkerboard (uniform on 8 squares); for the curve-based sets a point is drawn as
``x = c(t) + noise`` with ``t`` from a known 1-D law, so

.. math:: p(x) = \int p(t)\, p_\text{noise}(x - c(t))\, dt ,

which is evaluated by composite Gauss–Legendre quadrature in ``t`` (16 nodes per panel, each
panel at most one noise standard deviation of arc length). Against a rule with four times as
many panels the log density agrees to 1e-12 near the data and to 1e-8 up to 5 units away
(checked in the tests). The pinwheel is a smooth, locally invertible twist of a Gaussian; its
density is summed over the preimages of ``x``.

This module is private; the public entry point is :func:`npddpm.data.get`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import i0e, logsumexp

from .._checks import as_int
from .base import Dataset, as_points

__all__ = [
    "Checkerboard",
    "Circles",
    "GaussianMixtureData",
    "Moons",
    "Pinwheel",
    "SwissRoll",
    "TwoSpirals",
    "eight_gaussians",
    "twenty_five_gaussians",
]

_LOG_2PI = math.log(2.0 * math.pi)
# Rows per chunk so that a (rows, nodes) float64 work array stays near 16 MB.
_WORK_ELEMENTS = 2_000_000


def _chunks(n: int, per_row: int):
    step = max(1, _WORK_ELEMENTS // max(1, per_row))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def gauss_legendre_panels(a: float, b: float, panels: int, order: int = 16):
    """Nodes and weights of the composite Gauss–Legendre rule on ``[a, b]``.

    ``panels`` equal sub-intervals, ``order`` nodes each; the weights sum to ``b - a``.
    """
    z, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(a, b, panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[:-1] + edges[1:])
    nodes = (mid[:, None] + half[:, None] * z[None, :]).ravel()
    weights = (half[:, None] * w[None, :]).ravel()
    return nodes, weights


def _curve_gauss_logpdf(
    x: np.ndarray, pts: np.ndarray, logw: np.ndarray, sigma: float
) -> np.ndarray:
    r"""``log Σ_k exp(logw_k) N(x_i; pts_k, σ² I)`` for each row of ``x`` (2-D).

    Exact in float64: terms more than 745 below the largest underflow to 0 and are skipped.
    Compiled with Numba on first use (cached on disk).
    """
    global _CURVE_KERNEL
    if _CURVE_KERNEL is None:
        from .._numba import cpu_jit  # Numba is imported on first use, not with npddpm

        _CURVE_KERNEL = cpu_jit(cache=True, error_model="python")(_curve_gauss_logpdf_py)
    return _CURVE_KERNEL(x, pts, logw, float(sigma))


def _curve_gauss_logpdf_py(x, pts, logw, sigma):  # pragma: no cover - compiled
    m, k = x.shape[0], pts.shape[0]
    out = np.empty(m)
    buf = np.empty(k)
    inv = 0.5 / (sigma * sigma)
    norm = -math.log(2.0 * math.pi * sigma * sigma)
    for i in range(m):
        top = -np.inf
        for j in range(k):
            d0 = x[i, 0] - pts[j, 0]
            d1 = x[i, 1] - pts[j, 1]
            v = logw[j] - (d0 * d0 + d1 * d1) * inv
            buf[j] = v
            if v > top:
                top = v
        acc = 0.0
        for j in range(k):
            e = buf[j] - top
            if e > -745.0:
                acc += math.exp(e)
        out[i] = top + math.log(acc) + norm
    return out


_CURVE_KERNEL = None


# --------------------------------------------------------------------------------------
# Gaussian mixtures
# --------------------------------------------------------------------------------------


class GaussianMixtureData(Dataset):
    r"""A finite Gaussian mixture :math:`p(x) = \sum_k w_k\, N(x; \mu_k, \Sigma_k)`.

    Attributes
    ----------
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, D)
    covariances : ndarray, shape (K, D, D)
    """

    def __init__(self, name: str, weights: object, means: object, covariances: object) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, d, d):
            raise ValueError(
                f"mixture shapes disagree: weights {self.weights.shape}, means "
                f"{self.means.shape}, covariances {self.covariances.shape}; expected "
                f"(K,), (K, D), (K, D, D)"
            )
        if not np.isclose(self.weights.sum(), 1.0, rtol=0, atol=1e-12):
            raise ValueError(f"weights must sum to 1, got {self.weights.sum()!r}")
        super().__init__(name, (d,))
        self._chol = np.linalg.cholesky(self.covariances)
        self._chol_inv = np.linalg.inv(self._chol)
        self._log_det = 2.0 * np.log(np.diagonal(self._chol, axis1=1, axis2=2)).sum(axis=1)

    @property
    def distribution(self):
        """The mixture as an :class:`npddpm.analytic.GaussianMixture` (built on first use)."""
        from ..analytic import GaussianMixture  # lazy: analytic is on another branch

        return GaussianMixture(self.weights, self.means, self.covariances)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        comp = rng.choice(self.weights.size, size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        return self.means[comp] + np.einsum("nij,nj->ni", self._chol[comp], z)

    def log_prob(self, x: object) -> np.ndarray:
        """Exact log density log Σ_k w_k N(x; μ_k, Σ_k) at ``x`` (n, D); shape (n,)."""
        x = as_points(x, self.dim)
        out = np.empty(x.shape[0])
        k = self.weights.size
        log_w = np.log(self.weights) - 0.5 * (self.dim * _LOG_2PI + self._log_det)
        for sl in _chunks(x.shape[0], k * self.dim):
            diff = x[sl, None, :] - self.means[None, :, :]  # (c, K, D)
            z = np.einsum("ked,nkd->nke", self._chol_inv, diff)  # L_k^{-1} (x - mu_k)
            out[sl] = logsumexp(log_w[None, :] - 0.5 * np.sum(z * z, axis=-1), axis=1)
        return out


def eight_gaussians() -> GaussianMixtureData:
    """``8gaussians``: means at radius 2√2 at angles kπ/4, std 0.5/√2, equal weights.

    The usual FFJORD/WGAN-GP construction (radius 4, std 0.5, then divided by √2).
    """
    angles = np.arange(8) * np.pi / 4
    means = 2.0 * math.sqrt(2.0) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    var = (0.5 / math.sqrt(2.0)) ** 2
    return GaussianMixtureData(
        "8gaussians", np.full(8, 1 / 8), means, np.tile(var * np.eye(2), (8, 1, 1))
    )


def twenty_five_gaussians() -> GaussianMixtureData:
    """``25gaussians``: means on the grid {−2,…,2}²·√2/2, std 0.05/(2√2), equal weights.

    The usual construction (grid {−4, −2, 0, 2, 4}², std 0.05, then divided by 2√2).
    """
    g = np.arange(-2, 3) * 2.0 / (2.0 * math.sqrt(2.0))
    means = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    var = (0.05 / (2.0 * math.sqrt(2.0))) ** 2
    return GaussianMixtureData(
        "25gaussians", np.full(25, 1 / 25), means, np.tile(var * np.eye(2), (25, 1, 1))
    )


# --------------------------------------------------------------------------------------
# Curve + noise sets, density by quadrature along the curve
# --------------------------------------------------------------------------------------


class _CurveGaussian(Dataset):
    """Points ``c(t) + σ ε`` with ``t`` from a 1-D law; density by quadrature in ``t``."""

    sigma: float

    def _curve_nodes(self, refine: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature points on the curve(s) (K, 2) and log(weight × p(t) × component weight)."""
        raise NotImplementedError

    def log_prob(self, x: object, *, refine: int = 1) -> np.ndarray:
        """Exact log density (nats), shape (n,); ``refine`` multiplies the panel count."""
        x = as_points(x, 2)
        pts, logw = self._curve_nodes(as_int(refine, "refine", minimum=1))
        return _curve_gauss_logpdf(x, np.ascontiguousarray(pts), logw, self.sigma)


class Moons(_CurveGaussian):
    r"""``moons``: two interleaved half circles, each picked with probability ½.

    ``t ~ U[0, π]``; arcs ``a₁(t) = (cos t, sin t)`` and ``a₂(t) = (1 − cos t, ½ − sin t)``
    (scikit-learn's ``make_moons``), centred at (½, ¼) and scaled by 2:
    ``x = 2 (a(t) − (½, ¼)) + σ ε`` with ``σ = 0.1`` (``noise = 0.05`` before scaling).
    """

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__("moons", (2,))
        self.sigma = float(sigma)

    @staticmethod
    def _arcs(t: np.ndarray, which: np.ndarray) -> np.ndarray:
        c, s = np.cos(t), np.sin(t)
        arc = np.where(which[:, None], np.stack([1 - c, 0.5 - s], 1), np.stack([c, s], 1))
        return 2.0 * (arc - np.array([0.5, 0.25]))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.random(n) < 0.5
        t = rng.uniform(0.0, math.pi, n)
        return self._arcs(t, which) + self.sigma * rng.standard_normal((n, 2))

    def _curve_nodes(self, refine: int = 1):
        # Each arc has length 2π after scaling; one panel per σ of arc length.
        panels = refine * math.ceil(2 * math.pi / self.sigma)
        t, w = gauss_legendre_panels(0.0, math.pi, panels)
        pts = np.concatenate(
            [self._arcs(t, np.zeros(t.size, bool)), self._arcs(t, np.ones(t.size, bool))]
        )
        logw = np.log(np.concatenate([w, w]) * (0.5 / math.pi))
        return pts, logw


class SwissRoll(_CurveGaussian):
    r"""``swissroll``: ``t = 1.5π(1 + 2u)``, ``u ~ U[0, 1]``; ``x = (t cos t, t sin t)/5 + σ ε``.

    FFJORD's set (scikit-learn ``make_swiss_roll(noise=1.0)``, coordinates 0 and 2, divided
    by 5), so ``σ = 0.2``.
    """

    def __init__(self, sigma: float = 0.2) -> None:
        super().__init__("swissroll", (2,))
        self.sigma = float(sigma)

    @staticmethod
    def _curve(t: np.ndarray) -> np.ndarray:
        return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = 1.5 * math.pi * (1.0 + 2.0 * rng.random(n))
        return self._curve(t) + self.sigma * rng.standard_normal((n, 2))

    def _curve_nodes(self, refine: int = 1):
        a, b = 1.5 * math.pi, 4.5 * math.pi
        max_speed = math.sqrt(1 + b * b) / 5.0
        panels = refine * math.ceil((b - a) * max_speed / self.sigma)
        t, w = gauss_legendre_panels(a, b, panels)
        return self._curve(t), np.log(w / (b - a))


class TwoSpirals(_CurveGaussian):
    r"""``2spirals``: two mirrored Archimedean spirals (after FFJORD).

    ``s = 3π √u`` (so ``p(s) = 2s/(3π)²`` on ``[0, 3π]``), ``c(s) = (−s cos s, s sin s)/3``;
    a point is ``±c(s) + σ ε`` (each sign with probability ½), ``σ = 0.1``. FFJORD also adds
    a uniform jitter ``U[0, ½]²/3`` before the sign; npddpm leaves it out so the noise is
    Gaussian and the density is the same quadrature as for the other curves.
    """

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__("2spirals", (2,))
        self.sigma = float(sigma)

    @staticmethod
    def _curve(s: np.ndarray) -> np.ndarray:
        return np.stack([-np.cos(s) * s, np.sin(s) * s], axis=1) / 3.0

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        s = 3.0 * math.pi * np.sqrt(rng.random(n))
        sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        return sign[:, None] * self._curve(s) + self.sigma * rng.standard_normal((n, 2))

    def _curve_nodes(self, refine: int = 1):
        b = 3.0 * math.pi
        max_speed = math.sqrt(1 + b * b) / 3.0
        panels = refine * math.ceil(b * max_speed / self.sigma)
        s, w = gauss_legendre_panels(0.0, b, panels)
        c = self._curve(s)
        logw = np.log(0.5 * w * 2.0 * s / b**2)
        return np.concatenate([c, -c]), np.concatenate([logw, logw])


class Circles(Dataset):
    r"""``circles``: radii 3 and 1.5 (scikit-learn ``make_circles(factor=0.5, noise=0.08)``
    scaled by 3), each picked with probability ½, angle uniform, Gaussian noise ``σ = 0.24``.

    Exact density of one circle of radius ``r`` (integrate the angle out):

    .. math:: p_r(x) = \frac{1}{2\pi\sigma^2}
              \exp\!\Bigl(-\frac{(\lVert x\rVert - r)^2}{2\sigma^2}\Bigr)\,
              \tilde I_0\!\Bigl(\frac{\lVert x\rVert r}{\sigma^2}\Bigr),

    with :math:`\tilde I_0(z) = e^{-z} I_0(z)` (``scipy.special.i0e``).
    """

    radii = (3.0, 1.5)

    def __init__(self, sigma: float = 0.24) -> None:
        super().__init__("circles", (2,))
        self.sigma = float(sigma)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        r = np.where(rng.random(n) < 0.5, self.radii[0], self.radii[1])
        phi = rng.uniform(0.0, 2.0 * math.pi, n)
        pts = r[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=1)
        return pts + self.sigma * rng.standard_normal((n, 2))

    def log_prob(self, x: object) -> np.ndarray:
        """Exact log density at ``x`` (n, 2); shape (n,).

        Each circle of radius r (probability ½), uniform in angle and blurred by N(0, σ²I), has
        density exp(−(ρ − r)²/(2σ²))·I0e(ρr/σ²)/(2πσ²) at radius ρ = ‖x‖ (I0e the exponentially
        scaled Bessel function); the result is the log of their mean.
        """
        x = as_points(x, 2)
        rho = np.hypot(x[:, 0], x[:, 1])
        s2 = self.sigma**2
        terms = [
            -0.5 * (rho - r) ** 2 / s2 + np.log(i0e(rho * r / s2)) - math.log(2 * math.pi * s2)
            for r in self.radii
        ]
        return np.logaddexp(*terms) - math.log(2.0)


class Checkerboard(Dataset):
    r"""``checkerboard`` (FFJORD): uniform on 8 of the 16 squares of side 2 tiling [−4, 4)².

    A point ``x`` is in the support iff ``u = x/2`` lies in [−2, 2)² and
    ``⌊u₁⌋ + ⌊u₂⌋`` is even. The density is ``1/32`` there and 0 elsewhere.
    """

    def __init__(self) -> None:
        super().__init__("checkerboard", (2,))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x1 = 4.0 * rng.random(n) - 2.0
        x2 = rng.random(n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
        return 2.0 * np.stack([x1, x2], axis=1)

    def in_support(self, x) -> np.ndarray:
        """Exact support check; returns a bool array of shape (n,)."""
        u = as_points(x, 2) / 2.0
        inside = np.all((u >= -2.0) & (u < 2.0), axis=1)
        parity = (np.floor(u[:, 0]) + np.floor(u[:, 1])) % 2 == 0
        return inside & parity

    def log_prob(self, x: object) -> np.ndarray:
        """Exact log density at ``x`` (n, 2): log(1/32) on the support, −inf off it; shape (n,)."""
        return np.where(self.in_support(x), -math.log(32.0), -np.inf)


class Pinwheel(Dataset):
    r"""``pinwheel`` (FFJORD): 5 arms, a twisted Gaussian per arm.

    Arm ``k`` (probability 1/5): ``f ~ N((1, 0), diag(0.3², 0.1²))``,
    ``a = 2πk/5 + 0.25 e^{f_1}``, ``x = 2 R(−a) f`` with ``R`` the rotation matrix.

    The map ``f ↦ y = R(−a(f_1)) f`` has Jacobian determinant ``1 + 0.25 e^{f_1} f_2``, and
    its preimages are ``f = R(a) y`` with ``f_1`` a root of
    ``g(f_1) = (R(a(f_1)) y)_1 − f_1``. The density sums
    ``N(f) / |1 + 0.25 e^{f_1} f_2|`` over the roots in ``f_1 ∈ 1 ± 8·0.3`` (found on a grid of
    512 points and refined by bisection), divided by 4 for the factor 2. Truncating ``f_1``
    drops a probability mass of 1.2e−15.
    """

    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25

    def __init__(self) -> None:
        super().__init__("pinwheel", (2,))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        arm = rng.integers(0, self.arms, n)
        f = rng.standard_normal((n, 2)) * np.array([self.radial_std, self.tangential_std])
        f[:, 0] += 1.0
        a = 2 * math.pi * arm / self.arms + self.rate * np.exp(f[:, 0])
        c, s = np.cos(a), np.sin(a)
        y = np.stack([c * f[:, 0] + s * f[:, 1], -s * f[:, 0] + c * f[:, 1]], axis=1)
        return 2.0 * y

    def log_prob(self, x: object, *, grid: int = 512) -> np.ndarray:
        """Exact log density (nats), shape (n,); roots bracketed on ``grid`` points."""
        grid = as_int(grid, "grid", minimum=16)
        y = as_points(x, 2) / 2.0
        n = y.shape[0]
        lo, hi = 1.0 - 8 * self.radial_std, 1.0 + 8 * self.radial_std
        f1_grid = np.linspace(lo, hi, grid)
        logs, owner = [], []
        for k in range(self.arms):
            a_grid = 2 * math.pi * k / self.arms + self.rate * np.exp(f1_grid)
            cg, sg = np.cos(a_grid), np.sin(a_grid)
            for sl in _chunks(n, grid):
                yc = y[sl]
                g = yc[:, :1] * cg - yc[:, 1:] * sg - f1_grid  # (c, grid)
                pos = g > 0
                rows, cols = np.nonzero(pos[:, :-1] != pos[:, 1:])
                if rows.size == 0:
                    continue
                left, right = f1_grid[cols], f1_grid[cols + 1]
                y0, y1 = yc[rows, 0], yc[rows, 1]
                pos_left = pos[rows, cols]
                for _ in range(60):  # bisection to below float64 resolution of the bracket
                    mid = 0.5 * (left + right)
                    am = 2 * math.pi * k / self.arms + self.rate * np.exp(mid)
                    gm = y0 * np.cos(am) - y1 * np.sin(am) - mid
                    same = (gm > 0) == pos_left
                    left, right = np.where(same, mid, left), np.where(same, right, mid)
                f1 = 0.5 * (left + right)
                a = 2 * math.pi * k / self.arms + self.rate * np.exp(f1)
                f2 = y0 * np.sin(a) + y1 * np.cos(a)
                jac = np.abs(1.0 + self.rate * np.exp(f1) * f2)
                lp = (
                    -0.5 * ((f1 - 1.0) / self.radial_std) ** 2
                    - 0.5 * (f2 / self.tangential_std) ** 2
                    - _LOG_2PI
                    - math.log(self.radial_std * self.tangential_std)
                    - np.log(jac)
                )
                logs.append(lp)
                owner.append(rows + sl.start)
        out = np.full(n, -np.inf)
        if logs:
            lp, idx = np.concatenate(logs), np.concatenate(owner)
            peak = np.full(n, -np.inf)
            np.maximum.at(peak, idx, lp)
            acc = np.zeros(n)
            np.add.at(acc, idx, np.exp(lp - peak[idx]))
            has = acc > 0
            out[has] = peak[has] + np.log(acc[has])
        return out - math.log(self.arms) - math.log(4.0)
