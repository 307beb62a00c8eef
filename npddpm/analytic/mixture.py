r"""The analytic oracle: Gaussian-mixture data, its exact noised marginals q(x_t), and the
optimal denoiser for every parameterisation.

For data :math:`x_0 \sim \sum_k w_k \mathcal N(\mu_k, \Sigma_k)` every marginal of the forward
process is again a Gaussian mixture (Ho et al. 2020, Eq. 4):

.. math::

    q(x_t) = \sum_k w_k\, \mathcal N\big(\sqrt{\bar\alpha_t}\,\mu_k,\;
             \bar\alpha_t \Sigma_k + (1 - \bar\alpha_t) I\big).

Within component k, x₀ and x_t are jointly Gaussian, so with :math:`a = \sqrt{\bar\alpha_t}`,
:math:`\sigma^2 = 1 - \bar\alpha_t` and :math:`S_k = a^2\Sigma_k + \sigma^2 I`,

.. math::

    E[x_0 | x_t, k] = \mu_k + a\Sigma_k S_k^{-1}(x_t - a\mu_k), \qquad
    \mathrm{Cov}[x_0 | x_t, k] = \sigma^2 \Sigma_k S_k^{-1},

and the responsibilities :math:`r_k(x_t) \propto w_k \mathcal N(x_t; a\mu_k, S_k)` mix them:
``E[x₀|x_t] = Σ r_k m_k``, ``Cov[x₀|x_t] = Σ r_k (C_k + (m_k − m)(m_k − m)ᵀ)``. The score is
``Σ r_k (−S_k⁻¹(x_t − aμ_k))`` and ``E[ε|x_t] = −σ·score`` (Tweedie).

Numerics: everything is float64. Each Σ_k is diagonalised once, ``Σ_k = U_k Λ_k U_kᵀ``
(``eigh``); then :math:`S_k = U_k(a^2\Lambda_k + \sigma^2)U_k^\top` for **every** t, so all solves
are divisions by ``a²λ + σ² > 0`` in that basis — no matrix is ever inverted and per-row
timesteps cost nothing extra. Responsibilities use log-sum-exp. Data log-densities use a
Cholesky factor of Σ_k and triangular solves.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_triangular

from .. import parameterisation as _par
from .._rowwise import matmul

if TYPE_CHECKING:  # pragma: no cover
    from ..diffusion import GaussianDiffusion
    from ..schedules import Schedule

__all__ = [
    "GaussianMixture",
    "OracleDenoiser",
]

Array = np.ndarray
_LOG2PI = float(np.log(2.0 * np.pi))


def _logsumexp(a: Array, axis: int) -> Array:
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


class GaussianMixture:
    r"""A Gaussian mixture :math:`\sum_k w_k \mathcal N(\mu_k, \Sigma_k)` in D dimensions.

    Parameters
    ----------
    weights : array_like, shape (K,)
        Non-negative, summing to 1 (within 1e-9).
    means : array_like, shape (K, D)
    covariances : array_like
        Shape (K, D, D): full symmetric positive-definite matrices; (K, D): diagonals;
        (K,): isotropic variances (Σ_k = s_k² I). The number of axes decides the form.

    Attributes
    ----------
    weights, means : ndarray, float64
    covariance_type : {"full", "diag", "isotropic"}
    dim, num_components : int

    Examples
    --------
    >>> gm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.1, 0.2])
    >>> gm.covariance_type, gm.dim
    ('isotropic', 2)
    """

    def __init__(self, weights: object, means: object, covariances: object) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"weights must be a non-empty 1-D array (K,), got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
        if abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(
                f"weights must sum to 1, they sum to {w.sum()!r}; pass weights / weights.sum()"
            )
        K = w.size
        mu = np.asarray(means, dtype=np.float64)
        if mu.ndim != 2 or mu.shape[0] != K:
            raise ValueError(
                f"means must have shape (K, D) = ({K}, D) to match {K} weights, got {mu.shape}"
            )
        if not np.all(np.isfinite(mu)):
            raise ValueError("means must be finite")
        D = mu.shape[1]
        cov = np.asarray(covariances, dtype=np.float64)
        if not np.all(np.isfinite(cov)):
            raise ValueError("covariances must be finite")
        if cov.shape == (K,):
            kind = "isotropic"
            self._check_positive(cov, "variance")
            lam = np.repeat(cov[:, None], D, axis=1)
            U = None
        elif cov.shape == (K, D):
            kind = "diag"
            self._check_positive(cov, "diagonal")
            lam, U = cov.copy(), None
        elif cov.shape == (K, D, D):
            kind = "full"
            lam, U = self._check_spd(cov)
        else:
            raise ValueError(
                f"covariances must have shape (K, D, D) = ({K}, {D}, {D}) (full), ({K}, {D}) "
                f"(diagonal) or ({K},) (isotropic) for {K} components in {D} dimensions, "
                f"got {cov.shape}"
            )
        self.weights, self.means, self.covariance_type = w, mu, kind
        self.dim, self.num_components = D, K
        self._cov, self._lam, self._U = cov, lam, U
        self._chol: dict[int, Array] = {}  # Cholesky factors, computed on first use
        with np.errstate(divide="ignore"):
            self._logw = np.log(w)
        for arr in (self.weights, self.means, self._cov, self._lam):
            arr.setflags(write=False)

    # ---------------------------------------------------------------- validation

    @staticmethod
    def _check_positive(v: Array, what: str) -> None:
        bad = np.flatnonzero(np.any(v.reshape(v.shape[0], -1) <= 0, axis=1))
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"covariances[{k}] is not positive definite: every {what} must be > 0, got "
                f"{np.min(v[k])!r}"
            )

    @staticmethod
    def _check_spd(cov: Array) -> tuple[Array, Array]:
        lams, Us = [], []
        for k, c in enumerate(cov):
            scale = max(float(np.max(np.abs(c))), np.finfo(float).tiny)
            asym = float(np.max(np.abs(c - c.T)))
            if asym > 1e-10 * scale:
                raise ValueError(
                    f"covariances[{k}] is not symmetric (max |Σ − Σᵀ| = {asym:.3g}); pass "
                    "(Σ + Σᵀ) / 2"
                )
            lam, U = np.linalg.eigh(0.5 * (c + c.T))
            if lam[0] <= 0 or lam[0] <= 1e-14 * lam[-1]:
                raise ValueError(
                    f"covariances[{k}] is not positive definite: its smallest eigenvalue is "
                    f"{lam[0]:.3g} (largest {lam[-1]:.3g}); add a small multiple of I"
                )
            lams.append(lam)
            Us.append(U)
        U = np.stack(Us)
        U.setflags(write=False)
        return np.stack(lams), U

    # ---------------------------------------------------------------- basic API

    def eigenbasis(self, k: int) -> tuple[Array | None, Array]:
        r"""Component ``k``'s covariance as ``Σ_k = U diag(λ) Uᵀ``: ``(U, λ)``, shapes (D, D), (D,).

        ``U`` is None for diagonal and isotropic covariances (the basis is the identity).
        """
        return (None if self._U is None else self._U[k]), self._lam[k]

    @property
    def covariances(self) -> Array:
        """The covariances in the form they were given: (K, D, D), (K, D) or (K,)."""
        return self._cov

    def covariance_matrices(self) -> Array:
        """Full covariance matrices, shape (K, D, D)."""
        if self._U is None:
            return np.stack([np.diag(lam) for lam in self._lam])
        return self._cov.copy()

    def mean(self) -> Array:
        """E[x₀], shape (D,)."""
        return self.weights @ self.means

    def covariance(self) -> Array:
        """Cov[x₀] = Σ w_k (Σ_k + (μ_k − m)(μ_k − m)ᵀ), shape (D, D)."""
        d = self.means - self.mean()
        return np.einsum("k,kij->ij", self.weights, self.covariance_matrices()) + np.einsum(
            "k,ki,kj->ij", self.weights, d, d
        )

    def _sqrt_factor(self, k: int) -> Array:
        if self._U is None:
            return np.diag(np.sqrt(self._lam[k]))
        return self._U[k] * np.sqrt(self._lam[k])  # U Λ^{1/2}: (UΛ^{1/2})(UΛ^{1/2})ᵀ = Σ

    def sample(self, n: int, rng: np.random.Generator) -> Array:
        """``n`` independent draws, shape (n, D), float64."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}"
            )
        comp = rng.choice(self.num_components, size=int(n), p=self.weights)
        z = rng.standard_normal((int(n), self.dim))
        x = np.empty_like(z)
        for k in range(self.num_components):
            idx = comp == k
            x[idx] = self.means[k] + z[idx] @ self._sqrt_factor(k).T
        return x

    def _flat(self, x: object, name: str) -> tuple[Array, tuple[int, ...]]:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu" or x.dtype == bool:
            raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.dim:
            raise ValueError(
                f"{name} must have shape (B, {self.dim}) (or (B, ...) with {self.dim} values "
                f"per row) for this {self.dim}-dimensional mixture, got {x.shape}"
            )
        return x.reshape(x.shape[0], self.dim).astype(np.float64), x.shape

    def _cholesky(self, k: int) -> Array:
        if k not in self._chol:
            self._chol[k] = np.linalg.cholesky(self._cov[k])
        return self._chol[k]

    def log_prob(self, x: object) -> Array:
        r"""log p(x) per row, shape (B,), via Cholesky solves and log-sum-exp."""
        xf, _ = self._flat(x, "x")
        logs = np.empty((xf.shape[0], self.num_components))
        for k in range(self.num_components):
            d = xf - self.means[k]
            if self._U is None:
                maha = np.sum(d * d / self._lam[k], axis=1)
                logdet = np.sum(np.log(self._lam[k]))
            else:
                L = self._cholesky(k)
                y = solve_triangular(L, d.T, lower=True)
                maha = np.sum(y * y, axis=0)
                logdet = 2.0 * np.sum(np.log(np.diag(L)))
            logs[:, k] = self._logw[k] - 0.5 * (maha + logdet + self.dim * _LOG2PI)
        return _logsumexp(logs, axis=1)

    # ---------------------------------------------------------------- noised marginals

    @staticmethod
    def _coefs(schedule: Schedule, t: object, batch: int | None) -> tuple[Array, Array]:
        t_arr = np.asarray(t)
        if t_arr.dtype == bool or t_arr.dtype.kind not in "iu":
            raise TypeError(f"t must be an integer or an integer array, got dtype {t_arr.dtype}")
        T = schedule.num_timesteps
        if t_arr.size and (t_arr.min() < 0 or t_arr.max() >= T):
            raise ValueError(
                f"t must lie in [0, {T - 1}] (indices into the schedule), got {t_arr.min()} to "
                f"{t_arr.max()}"
            )
        if batch is not None:
            if t_arr.ndim == 0:
                t_arr = np.full(batch, int(t_arr))
            if t_arr.shape != (batch,):
                raise ValueError(f"t must be an int or have shape ({batch},), got {t_arr.shape}")
        return schedule.alphas_cumprod[t_arr], schedule.one_minus_alphas_cumprod[t_arr]

    def marginal(self, schedule: Schedule, t: int) -> GaussianMixture:
        r"""q(x_t) as a mixture: means √ᾱ_t μ_k, covariances ᾱ_t Σ_k + (1 − ᾱ_t) I."""
        ab, om = self._coefs(schedule, t, None)
        if np.ndim(ab) != 0:
            raise ValueError("marginal needs a single timestep t (an int)")
        abf, omf = float(ab), float(om)
        if self.covariance_type == "full":
            cov = abf * self._cov + omf * np.eye(self.dim)
        else:
            cov = abf * self._cov + omf
        return GaussianMixture(self.weights, np.sqrt(abf) * self.means, cov)

    def _posterior(self, xf: Array, ab: Array, om: Array, want_cov: bool = False) -> dict:
        """Per-row posterior quantities for x_t rows ``xf`` (B, D) at ᾱ = ab, 1 − ᾱ = om (B,)."""
        B, K = xf.shape[0], self.num_components
        # eigenvalues a²λ + σ² of S_k(t) and their logs, once per distinct timestep
        if ab.size and ab.min() == ab.max():  # one timestep for the whole batch (samplers)
            ab_u, first, inv = ab[:1], np.zeros(1, dtype=np.int64), np.zeros(B, dtype=np.int64)
        else:
            ab_u, first, inv = np.unique(ab, return_index=True, return_inverse=True)
        den_u = ab_u[:, None, None] * self._lam[None] + om[first][:, None, None]  # (U, K, D)
        logdet_u = np.sum(np.log(den_u), axis=2)  # (U, K)
        one_t = ab_u.size == 1
        a = np.sqrt(ab)[:, None]
        logs = np.empty((B, K))
        parts = []
        for k in range(K):
            d = xf - a * self.means[k]
            y = d if self._U is None else matmul(d, self._U[k])  # in Σ_k's eigenbasis
            den = den_u[0, k] if one_t else den_u[inv, k]
            q = y / den
            logs[:, k] = self._logw[k] - 0.5 * (
                np.sum(y * q, axis=1) + logdet_u[inv, k] + self.dim * _LOG2PI
            )
            cv = self._lam[k] * (om[:, None] / den) if want_cov else None
            parts.append((q, a * (self._lam[k] * q), cv))
        lse = _logsumexp(logs, axis=1)
        r = np.exp(logs - lse[:, None])
        score = np.zeros_like(xf)
        x0 = np.zeros_like(xf)
        comp_means = []
        for k, (sy, gy, _) in enumerate(parts):
            rk = r[:, k : k + 1]
            s_k = sy if self._U is None else matmul(sy, self._U[k].T)
            m_k = self.means[k] + (gy if self._U is None else matmul(gy, self._U[k].T))
            score -= rk * s_k
            x0 += rk * m_k
            comp_means.append(m_k)
        out = {"log_prob": lse, "resp": r, "score": score, "x0_mean": x0}
        if want_cov:
            cov = np.zeros((B, self.dim, self.dim))
            for k, (_, _, cv) in enumerate(parts):
                if cv is None:  # set for every component when want_cov
                    raise AssertionError("component posterior covariance missing")
                rk = r[:, k, None, None]
                dm = comp_means[k] - x0
                if self._U is None:
                    ck = np.einsum("bi,ij->bij", cv, np.eye(self.dim))
                else:
                    ck = np.einsum("ik,bk,jk->bij", self._U[k], cv, self._U[k])
                cov += rk * (ck + dm[:, :, None] * dm[:, None, :])
            out["x0_cov"] = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        return out

    def _run(self, x_t: object, schedule: Schedule, t: object, key: str) -> Array:
        xf, _ = self._flat(x_t, "x_t")
        ab, om = self._coefs(schedule, t, xf.shape[0])
        return self._posterior(xf, ab, om, want_cov=key == "x0_cov")[key]

    def score(self, x_t: npt.ArrayLike, schedule: Schedule, t: object) -> Array:
        r"""∇ log q(x_t), shape of x_t (float64). ``t``: an index or one per row."""
        return self._run(x_t, schedule, t, "score").reshape(np.shape(x_t))

    def eps(self, x_t: npt.ArrayLike, schedule: Schedule, t: object) -> Array:
        r"""E[ε | x_t] = −√(1 − ᾱ_t)·∇ log q(x_t) (Tweedie), shape of x_t."""
        xf, _ = self._flat(x_t, "x_t")
        _, om = self._coefs(schedule, t, xf.shape[0])
        s = self._run(x_t, schedule, t, "score")
        return (-np.sqrt(om)[:, None] * s).reshape(np.shape(x_t))

    def x0_mean(self, x_t: npt.ArrayLike, schedule: Schedule, t: object) -> Array:
        r"""E[x₀ | x_t], shape of x_t."""
        return self._run(x_t, schedule, t, "x0_mean").reshape(np.shape(x_t))

    def x0_covariance(self, x_t: npt.ArrayLike, schedule: Schedule, t: object) -> Array:
        r"""Cov[x₀ | x_t], shape (B, D, D) (mixture of component posteriors, law of total
        variance)."""
        return self._run(x_t, schedule, t, "x0_cov")

    def marginal_log_prob(self, x_t: npt.ArrayLike, schedule: Schedule, t: object) -> Array:
        r"""log q(x_t) per row, shape (B,) (per-row t allowed)."""
        return self._run(x_t, schedule, t, "log_prob")

    def posterior_mean_at(self, x: npt.ArrayLike, alpha: npt.ArrayLike,
                          sigma: npt.ArrayLike) -> Array:
        r"""E[x₀ | x] for x = α x₀ + σ ε at any level (α ≥ 0, σ > 0; one per row or one for
        all), shape of x. It depends on x/σ and α/σ only, so α = 0 (pure noise) is allowed."""
        xf, _ = self._flat(x, "x")
        B = xf.shape[0]
        a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (B,))
        s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (B,))
        if np.any(s <= 0) or np.any(a < 0):
            raise ValueError("posterior_mean_at needs α ≥ 0 and σ > 0")
        u = a / s
        out = self._posterior(xf / s[:, None], u * u, np.ones(B))["x0_mean"]
        return np.asarray(out).reshape(np.shape(x))

    def data_score(self, x: npt.ArrayLike) -> Array:
        r"""∇ log p(x) of the mixture itself (the t → −1 limit: ᾱ = 1), shape of x."""
        xf, _ = self._flat(x, "x")
        B = xf.shape[0]
        return self._posterior(xf, np.ones(B), np.zeros(B))["score"].reshape(np.shape(x))

    def denoiser(self, diffusion: Any, prediction: str | None = None) -> Any:
        """The optimal model for ``diffusion``: an :class:`OracleDenoiser` (integer original
        timesteps, the diffusion's mean_type); for a :mod:`npddpm.paths` path, a
        :class:`~npddpm.analytic.flow.PathOracle` (real path times, ``prediction`` as given,
        default ``"eps"``)."""
        from ..paths import NoisePath
        from .flow import PathOracle

        if isinstance(diffusion, NoisePath):
            return PathOracle(self, diffusion, prediction or "eps")
        if prediction is not None:
            raise ValueError(
                "prediction= is for paths; a diffusion's oracle predicts its mean_type"
            )
        return OracleDenoiser(self, diffusion)

    def flow_map(
        self,
        diffusion_or_path: Any,
        x: npt.ArrayLike,
        t_from: float,
        t_to: float | None,
        **kwargs: Any,
    ) -> Any:
        """The exact probability-flow map from ``t_from`` to ``t_to`` (path times; for a
        diffusion, original timesteps); see :func:`npddpm.analytic.flow.flow_map`."""
        from .flow import flow_map

        return flow_map(self, diffusion_or_path, np.asarray(x), t_from, t_to, **kwargs)

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.num_components}, D={self.dim}, "
            f"covariance_type={self.covariance_type!r})"
        )


class OracleDenoiser:
    r"""The Bayes-optimal model output of a :class:`GaussianMixture` for one diffusion.

    Called as ``denoiser(x_t, t)`` with ``t`` the **original** timesteps (what samplers pass,
    ``diffusion.model_timesteps(index)``), it returns, for the diffusion's ``mean_type``:

    * ``"eps"``: E[ε | x_t]; ``"x0"``: E[x₀ | x_t];
      ``"v"``: E[v | x_t] = √ᾱ E[ε | x_t] − √(1 − ᾱ) E[x₀ | x_t];
    * ``"x_prev"``: the exact E[x_{t−1} | x_t] = coef1·E[x₀ | x_t] + coef2·x_t.

    For ``var_type`` ``"learned"``/``"learned_range"`` the channel axis (axis 1) is doubled
    and the second half holds the **diagonal of the exact reverse covariance**
    ``β̃_t + coef1²·diag Cov[x₀ | x_t]`` in the diffusion's encoding (log-variance or
    variance per ``profile.learned_output``; for ``learned_range`` the
    interpolation value v with ``exp(((v+1)/2) log β + (1 − (v+1)/2) log β̃) =`` that
    variance). For single-Gaussian data with diagonal covariance this is the exact reverse
    variance.

    :meth:`x0_covariance` gives Cov[x₀ | x_t] for the samplers' ``variance="exact"``.
    """

    def __init__(self, mixture: GaussianMixture, diffusion: GaussianDiffusion) -> None:
        if not isinstance(mixture, GaussianMixture):
            raise TypeError("mixture must be a GaussianMixture")
        if not hasattr(diffusion, "schedule") or not hasattr(diffusion, "mean_type"):
            raise TypeError(
                f"diffusion must be an npddpm.GaussianDiffusion, got {type(diffusion).__name__}"
            )
        self.mixture, self.diffusion = mixture, diffusion

    def indices(self, t: object) -> Array:
        """Map original timesteps back to indices of the (respaced) schedule."""
        return self.diffusion.schedule.index_of(t)

    def _posterior(self, x_t: object, t: object, want_cov: bool) -> tuple:
        xf, shape = self.mixture._flat(x_t, "x_t")
        idx = self.indices(t)
        if idx.ndim == 0:
            idx = np.full(xf.shape[0], int(idx))
        if idx.shape != (xf.shape[0],):
            raise ValueError(f"t must have shape ({xf.shape[0]},), got {idx.shape}")
        s = self.diffusion.schedule
        post = self.mixture._posterior(
            xf, s.alphas_cumprod[idx], s.one_minus_alphas_cumprod[idx], want_cov=want_cov
        )
        return xf, shape, idx, post

    def __call__(self, x_t: Array, t: Array) -> Array:
        xf, shape, idx, post = self._posterior(
            x_t, t, self.diffusion.var_type.startswith("learned")
        )
        s, d, f64 = self.diffusion.schedule, self.diffusion, np.dtype(np.float64)
        col = (slice(None), None)
        eps = _par.eps_from_score(s, post["score"], idx, f64)
        x0 = post["x0_mean"]
        if d.mean_type == "eps":
            mean = eps
        elif d.mean_type == "x0":
            mean = x0
        elif d.mean_type == "v":
            mean = _par.v_from_xstart_eps(s, x0, idx, eps, f64)
        else:
            mean = d.posterior_mean(x0, xf, idx, f64)
        dtype = np.asarray(x_t).dtype
        mean = mean.reshape(shape)
        if not d.var_type.startswith("learned"):
            return mean.astype(dtype)
        var = s.posterior_variance[idx][col] + s.posterior_mean_coef1[idx][col] ** 2 * np.diagonal(
            post["x0_cov"], axis1=1, axis2=2
        )
        logvar = np.log(var)
        if d.var_type == "learned":
            vals = var if d.profile.learned_output == "variance" else logvar
        else:
            lo, hi = d.tables.small_logvar[idx][col], d.tables.log_betas[idx][col]
            span = hi - lo
            safe = np.where(span == 0, 1.0, span)
            vals = np.where(span == 0, 0.0, 2.0 * (logvar - lo) / safe - 1.0)
        return np.concatenate([mean, vals.reshape(shape)], axis=1).astype(dtype)

    def x0_covariance(self, x_t: Array, t: Array) -> Array:
        """Cov[x₀ | x_t], shape (B, D, D), float64; ``t`` the original timesteps."""
        return self._posterior(x_t, t, True)[3]["x0_cov"]

    def __repr__(self) -> str:
        return f"OracleDenoiser({self.mixture!r}, {self.diffusion!r})"
