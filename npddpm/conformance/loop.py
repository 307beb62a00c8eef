r"""A black-box check of a whole sampling loop: run the implementation's own sampler, with its
own RNG, on npddpm's analytic oracle as the model, and compare the **law** of what comes out
with the exact law of the sampler it claims to be.

No noise is injected and nothing is patched: :func:`check_loop` calls
``sample_fn(model, shape, seed)``, which runs the implementation's loop with ``model(x_t, t)``
the Bayes-optimal model (:class:`npddpm.analytic.OracleDenoiser`) of Gaussian data
:math:`\mathcal N(\mu, \Sigma)`, speaking the claimed ``diffusion.mean_type``.

The exact law
-------------
With the oracle of single-Gaussian data every DDPM and DDIM step is affine in x_t and the
fresh noise; in the data's eigenbasis :math:`y = U^\top x` (Σ = U diag(λ) Uᵀ) every step is
coordinate-wise, :math:`y_{\rm prev} = A\,y + B + \sqrt v\,z`, so from x_T ~ N(0, I) the output
is exactly

.. math::  U^\top x_0 \sim \mathcal N\big(m, \operatorname{diag}(p)\big), \qquad
           m \leftarrow A m + B,\quad p \leftarrow A^2 p + v

(:func:`npddpm.analytic.sampler_moments`; no clipping: with the default data the oracle's
x̂₀ stays far inside [−1, 1], so an implementation that clamps x̂₀ there has the same law).

The tests
---------
The n outputs are rotated and standardised, :math:`w_{ij} = (y_{ij} - m_j)/\sqrt{p_j}`; under
the claim the rows are i.i.d. N(0, I), and three families of statistics have exact null laws:

* **mean**, per coordinate: :math:`\sqrt n\,\bar w_j \sim \mathcal N(0, 1)`;
* **variance**, per coordinate: :math:`S_j = \sum_i (w_{ij} - \bar w_j)^2 \sim \chi^2_{n-1}`;
* **correlation**, per pair j < k, with r the sample correlation:
  :math:`r\sqrt{n-2}/\sqrt{1-r^2} \sim t_{n-2}`.

Each is two-sided and turned into a normal-equivalent :math:`z = \Phi^{-1}(1 - P/2)` through
its exact null distribution (P its two-sided p-value). With K = 2D + D(D−1)/2 tests,
Bonferroni gives each the level α/K, i.e. the threshold :math:`z^* = \Phi^{-1}(1 - α/(2K))`,
and **P(a correct loop FAILs) ≤ α** (default :data:`LOOP_ALPHA` = 1e-6) whatever the
dependence between the tests. A row's ``worst_ratio`` is max |z| / z*, ≤ 1 passes. The seed is
fixed (``seed=0``), so a verdict is reproducible. Assumption: the implementation's own
rounding is small next to the test's resolution (√(2/n) ≈ 1.4 % in variance at n = 10⁴;
float32 rounding is ~10⁻⁶ of that).

Chain coverage
--------------
The model records every timestep it is called with, mapped to **original** timesteps by
``t_map``: ``"original"`` (the loop passes original timesteps, as lucidrains, diffusers and
improved-diffusion's wrapped models do), ``"index"`` (it passes indices into the claimed
respaced chain) or a callable. Consecutive calls at one timestep count as one visit (e.g.
guidance). The ``chain`` row FAILs unless the visits are exactly the claimed chain,
``timestep_map`` from the last entry down to the first, and names the difference (a
timestep never visited, one not in the chain, a repeat, the first out-of-order step). A call
at a timestep outside the claimed chain (which the oracle cannot answer) stops the loop.

Power
-----
Default data (:func:`default_loop_data`): D = 4, diagonal Σ with λ = 1e-4 … 1e-3, means
0.1, −0.05, 0.02, −0.1. Small variances make last-step faults large against the output's
variance (the noise of the step at t = 1 on the linear schedule has variance β̃₁ ≈ 5.5e-5,
half the smallest λ). Detection rate of seeded faults at the default n = 10⁴, α = 1e-6,
measured over 20 seeds (linear schedule, T = 1000, ε-prediction unless stated;
``python tests/conformance/test_loop.py`` re-measures it):

=========================================  =========  ========  =================
seeded fault                               FAIL rate  law FAIL  median law ratio
=========================================  =========  ========  =================
final step skipped (returns x₁)            1.00       1.00      23
chain starts one step late (at T−2)        1.00       0.00      0.35 (chain row)
model called at the previous timestep      1.00       1.00      2.3
noise added at the last step (σ² = β̃₁)     1.00       1.00      12
no noise at t = 1                          1.00       1.00      4.6
σ² = β instead of β̃                        1.00       1.00      7.2
x̂₀ from ᾱ_{t−1} (table off by one)         1.00       1.00      35
DDIM direction term with the wrong sign    1.00       1.00      39
DDIM η = 1 where η = 0 is claimed          1.00       1.00      1.5
correct DDPM / correct DDIM (false FAIL)   0.00       0.00      0.37 / 0.36
=========================================  =========  ========  =================

What the law test cannot see: faults that leave the output law unchanged on Gaussian data
or change it below the resolution — in DDPM, the start x_T drawn with a wrong variance or
mean (the chain forgets x_T: its weight in the output is ∏A ≈ 10⁻⁶ against an output sd of
10⁻²; deterministic DDIM's output is ∏A·x_T, so there it shows), faults confined to early
(large-t) steps, ε answered where v is expected (v → ε as t → 0, so the mismatch lives at
large t: lucidrains' pred_v loop passes with it), noise at t = 0 with a floored
log-variance (σ = 1e-10), a missing or wrong x̂₀ clamp (never active with the oracle on this
data), dtype or device handling, self-conditioning, batch-size-dependent bugs, a seed that
is ignored, and anything only non-Gaussian data exercises (the oracle is affine). The chain
row sees which timesteps the model is called at, not which coefficients the loop uses.

Exceptions raised inside the loop become a FAIL row (``raised X: msg``) and a
:class:`~npddpm.conformance.report.Report` still comes back; misuse of npddpm (wrong
argument types or values) raises TypeError/ValueError naming the argument.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import as_int, choose
from ..analytic import GaussianMixture, sampler_moments
from ..diffusion import GaussianDiffusion
from .report import Report, Row

__all__ = ["LOOP_ALPHA", "check_loop", "default_loop_data"]

Array = np.ndarray
LOOP_ALPHA = 1e-6  # the default total false-failure probability of check_loop
_SAMPLERS = ("ddpm", "ddim")
_T_MAPS = ("original", "index")
_FRAMEWORKS = ("numpy", "torch")


def default_loop_data(dim: int = 4) -> GaussianMixture:
    r"""The default data of :func:`check_loop`: one Gaussian in ``dim`` dimensions with
    diagonal Σ, variances geometric from 1e-4 to 1e-3 and means cycling 0.1, −0.05, 0.02,
    −0.1 — distinct per coordinate, so a permutation or transpose of coordinates shows."""
    dim = as_int(dim, "dim", minimum=1)
    lam = np.geomspace(1e-4, 1e-3, dim) if dim > 1 else np.array([1e-4])
    means = np.resize(np.array([0.1, -0.05, 0.02, -0.1]), dim)
    return GaussianMixture([1.0], means[None], lam[None])


class _LoopCallError(Exception):
    """The loop called the model in a way the claim does not allow (stops the loop)."""


class _AffineOracle:
    r"""The oracle of single-Gaussian data with a fixed variance, written out affinely.

    In Σ's eigenbasis, with ``a = √ᾱ`` and ``d = ᾱλ + 1 − ᾱ``: ``E[x₀|x_t] = μ + aλ(y − aμ)/d``
    and ``E[ε|x_t] = √(1−ᾱ)(y − aμ)/d`` — what :class:`~npddpm.analytic.OracleDenoiser`
    returns for one component (the same formulas without its mixture machinery, ~10× faster);
    the output is cast to x_t's dtype.
    """

    def __init__(self, data: GaussianMixture, diffusion: GaussianDiffusion) -> None:
        self.U, self.lam = data.eigenbasis(0)
        mu = data.means[0]
        self.mu = mu if self.U is None else self.U.T @ mu
        self.schedule, self.mean_type = diffusion.schedule, diffusion.mean_type
        self.dim = data.dim

    def __call__(self, x_t: Array, t: Array) -> Array:
        s, U, lam, mu = self.schedule, self.U, self.lam, self.mu
        x = np.asarray(x_t)
        xf = x.reshape(x.shape[0], self.dim).astype(np.float64)
        idx = np.atleast_1d(s.index_of(t))  # one timestep (a scalar t): (1, D) coefficients
        ab = s.alphas_cumprod[idx][:, None]
        om = s.one_minus_alphas_cumprod[idx][:, None]
        a, so = np.sqrt(ab), np.sqrt(om)
        d = ab * lam + om
        # out = k·r + c with r = (y − aμ)/d, i.e. out = (k/d)·y + (c − k·aμ/d)
        if self.mean_type == "eps":
            k, c = so + 0 * lam, 0 * mu
        elif self.mean_type == "x0":
            k, c = a * lam, mu + 0 * a
        elif self.mean_type == "v":
            k, c = a * so * (1.0 - lam), -so * mu
        else:  # x_prev: the posterior mean coef1·x₀ + coef2·x_t, with y = d·r + aμ
            c1, c2 = s.posterior_mean_coef1[idx][:, None], s.posterior_mean_coef2[idx][:, None]
            k, c = c1 * a * lam + c2 * d, c1 * mu + c2 * a * mu
        y = xf if U is None else xf @ U
        out = (k / d) * y + (c - k * a * mu / d)
        if U is not None:
            out = out @ U.T
        return out.reshape(x.shape).astype(x.dtype)


class _RecordingModel:
    """The oracle in the user's tensor type, recording the timesteps of every call."""

    def __init__(
        self,
        oracle: Callable[[Array, Array], Array],
        chain: Array,
        t_map: str | Callable[[Array], Any],
        to_numpy: Callable[[Any], Any],
        to_tensor: Callable[[Array, Any], Any],
    ) -> None:
        self.oracle, self.chain, self.t_map = oracle, chain, t_map
        self.to_numpy, self.to_tensor = to_numpy, to_tensor
        self.visits: list[int] = []  # distinct consecutive timesteps, in call order
        self.mixed: list[list[int]] = []  # calls whose batch mixed several timesteps
        self.calls = 0

    def _timesteps(self, t: Any, batch: int) -> Array:
        tn = np.asarray(self.to_numpy(t))
        if tn.dtype.kind == "f" and np.all(tn == np.round(tn)):
            tn = tn.astype(np.int64)
        if tn.dtype == bool or tn.dtype.kind not in "iu":
            raise _LoopCallError(
                f"the loop called the model with t of dtype {tn.dtype}, not integers"
            )
        tn = np.broadcast_to(tn.reshape(-1) if tn.ndim else tn, (batch,)).astype(np.int64)
        if self.t_map == "index":
            if tn.min() < 0 or tn.max() >= self.chain.size:
                bad = int(tn.min() if tn.min() < 0 else tn.max())
                raise _LoopCallError(
                    f"the loop called the model at index {bad}, outside the claimed chain's "
                    f"indices 0..{self.chain.size - 1}"
                )
            return self.chain[tn]
        if callable(self.t_map):
            return np.broadcast_to(np.asarray(self.t_map(tn)).astype(np.int64), (batch,))
        return tn

    def __call__(self, x_t: Any, t: Any) -> Any:
        self.calls += 1
        xn = np.asarray(self.to_numpy(x_t))
        orig = self._timesteps(t, xn.shape[0] if xn.ndim else 1)
        lo, hi = (int(orig.min()), int(orig.max())) if orig.size else (0, 0)
        uniq = [lo] if lo == hi else [int(u) for u in dict.fromkeys(orig.tolist())]
        if len(uniq) > 1:
            self.mixed.append(uniq)
        for u in uniq:
            if not self.visits or self.visits[-1] != u:
                self.visits.append(u)
        outside = [u for u in uniq if u not in self._chain_set]
        if outside:
            raise _LoopCallError(
                f"the loop called the model at t={outside[0]}, not a timestep of the claimed "
                f"chain ({_span(self.chain)})"
            )
        t_oracle = np.asarray(lo, dtype=np.int64) if len(uniq) == 1 else orig  # broadcast one t
        return self.to_tensor(self.oracle(xn, t_oracle), x_t)

    @property
    def _chain_set(self) -> set[int]:
        if not hasattr(self, "_set"):
            self._set = {int(c) for c in self.chain}
        return self._set


def _span(chain: Array) -> str:
    return f"{int(chain[-1])}..{int(chain[0])}, {chain.size} steps"


def _hooks(
    framework: str, to_tensor: Any, to_numpy: Any
) -> tuple[Callable[[Array, Any], Any], Callable[[Any], Any]]:
    framework = choose(framework, "framework", _FRAMEWORKS)
    if framework == "torch":
        import torch

        def t_tensor(a: Array, like: Any) -> Any:
            return torch.as_tensor(a).to(dtype=like.dtype, device=like.device)

        def t_numpy(x: Any) -> Any:
            return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

        default_tensor, default_numpy = t_tensor, t_numpy
    else:
        default_tensor, default_numpy = (lambda a, like: a), (lambda x: np.asarray(x))
    for value, name in ((to_tensor, "to_tensor"), (to_numpy, "to_numpy")):
        if value is not None and not callable(value):
            raise TypeError(
                f"{name} must be a callable or None (the framework's default), got "
                f"{type(value).__name__}"
            )
    return (to_tensor or default_tensor), (to_numpy or default_numpy)


def _check_args(
    sample_fn: object,
    diffusion: object,
    data: object,
    n: object,
    seed: object,
    alpha: object,
    event_shape: object,
) -> tuple[GaussianMixture, int, int, float]:
    if not callable(sample_fn):
        raise TypeError(
            f"sample_fn must be a callable sample_fn(model, shape, seed) -> samples, got "
            f"{type(sample_fn).__name__}"
        )
    if not isinstance(diffusion, GaussianDiffusion):
        raise TypeError(
            f"diffusion must be the npddpm.GaussianDiffusion the loop claims to be (respaced "
            f"with .respace(timesteps) for a shorter chain), got {type(diffusion).__name__}"
        )
    if data is None:
        dim = 4
        if isinstance(event_shape, tuple) and all(isinstance(s, int) for s in event_shape):
            dim = max(math.prod(event_shape), 1)
        data = default_loop_data(dim)
    if not isinstance(data, GaussianMixture) or data.num_components != 1:
        raise TypeError(
            f"data must be a one-component npddpm.analytic.GaussianMixture (the law is exact "
            f"only for Gaussian data) or None for default_loop_data(), got {data!r}"
        )
    n_i = as_int(n, "n", minimum=data.dim + 3)
    seed_i = as_int(seed, "seed", minimum=0)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a float in (0, 1), e.g. 1e-6, got {alpha!r}")
    if not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be a probability in (0, 1), e.g. 1e-6, got {alpha!r}")
    return data, n_i, seed_i, float(alpha)


def _z_two_sided(p_lower: Array, p_upper: Array, approx: Array) -> Array:
    """Normal-equivalent |z| of two-sided p = 2 min(lower, upper); ``approx`` where p underflows."""
    from scipy.stats import norm

    p = np.minimum(p_lower, p_upper)
    with np.errstate(divide="ignore"):
        z = norm.isf(p)
    return np.where(p > 0, z, np.abs(approx))


def _law_rows(x: Array, U: Array | None, m: Array, p: Array, alpha: float) -> list[Row]:
    from scipy.stats import chi2, norm
    from scipy.stats import t as student_t

    n, D = x.shape
    y = x if U is None else x @ U
    w = (y - m) / np.sqrt(p)
    K = 2 * D + D * (D - 1) // 2
    z_star = float(norm.isf(alpha / (2 * K)))
    lvl = f"two-sided, α/K = {alpha:.0e}/{K}"
    basis = "coordinate" if U is None else "eigen-coordinate"
    rows = []
    # mean
    wbar = w.mean(axis=0)
    z_mean = np.abs(np.sqrt(n) * wbar)
    j = int(np.argmax(z_mean))
    ybar = y.mean(axis=0)
    err = np.abs(ybar - m)
    rows.append(
        _row(
            "output mean",
            err,
            err / np.maximum(np.abs(m), np.sqrt(p)),
            z_mean,
            z_star,
            f"{basis} {j}: mean {ybar[j]:.4g} vs exact {m[j]:.4g} (sd of the mean "
            f"{math.sqrt(p[j] / n):.2g}); z = {z_mean[j]:.3g} vs {z_star:.3g} ({lvl})",
        )
    )
    # variance
    S = np.sum((w - wbar) ** 2, axis=0)
    k = n - 1
    wh = ((S / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))  # Wilson–Hilferty
    z_var = _z_two_sided(chi2.cdf(S, k), chi2.sf(S, k), wh)
    j = int(np.argmax(z_var))
    var = S / k * p
    rel = var / p - 1
    rows.append(
        _row(
            "output variance",
            np.abs(var - p),
            np.abs(rel),
            z_var,
            z_star,
            f"{basis} {j}: variance {var[j]:.4g} vs exact {p[j]:.4g} (Δ = {var[j] - p[j]:+.3g}, "
            f"{100 * rel[j]:+.3g} %); z = {z_var[j]:.3g} vs {z_star:.3g} ({lvl}; χ²_{k})",
        )
    )
    # correlation
    if D > 1:
        wc = (w - wbar) / np.sqrt(S)
        R = wc.T @ wc
        iu = np.triu_indices(D, 1)
        r = np.clip(R[iu], -1 + 1e-15, 1 - 1e-15)
        nu = n - 2
        tt = r * math.sqrt(nu) / np.sqrt(1 - r * r)
        approx = tt * (1 - 1 / (4 * nu)) / np.sqrt(1 + tt * tt / (2 * nu))
        z_cor = _z_two_sided(student_t.cdf(tt, nu), student_t.sf(tt, nu), approx)
        q = int(np.argmax(z_cor))
        rows.append(
            _row(
                "output correlation",
                np.abs(r),
                np.full(r.shape, np.nan),
                z_cor,
                z_star,
                f"{basis}s {iu[0][q]},{iu[1][q]}: correlation {r[q]:+.3g} vs exact 0; z = "
                f"{z_cor[q]:.3g} vs {z_star:.3g} ({lvl}; t_{nu})",
            )
        )
    return rows


def _row(quantity: str, err: Array, rel: Array, z: Array, z_star: float, where: str) -> Row:
    ratio = float(np.max(z)) / z_star
    return Row(
        quantity,
        "output",
        float(np.max(err)),
        float(np.nanmax(rel)) if np.any(np.isfinite(rel)) else float("nan"),
        ratio,
        "ok" if ratio <= 1 else "FAIL",
        where=where,
    )


def _chain_row(model: _RecordingModel, chain: Array, finished: bool) -> Row:
    expected = [int(c) for c in chain[::-1]]
    got = model.visits
    problems = []
    if model.mixed:
        problems.append(
            f"{len(model.mixed)} calls mixed timesteps in one batch, first {model.mixed[0]}"
        )
    if got != expected:
        exp_set, seen = set(expected), set(got)
        missing = [t for t in expected if t not in seen]
        extra = [t for t in dict.fromkeys(got) if t not in exp_set]
        repeats = sorted({t for t in got if got.count(t) > 1})
        if missing:
            problems.append(f"never called at t={_few(missing)}")
        if extra:
            problems.append(f"called at t={_few(extra)}, not in the chain")
        if repeats:
            problems.append(f"revisited t={_few(repeats)}")
        i = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
        if i is not None:
            problems.append(f"visit {i} was t={got[i]}, the chain's step {i} is t={expected[i]}")
        elif not (missing or extra or repeats):
            problems.append(f"{len(got)} visits for {len(expected)} steps")
        if not finished:
            problems.append("the loop stopped early")
    got_txt = f"{got[0]}..{got[-1]}, {len(got)} visits" if got else "never called the model"
    verdict = "FAIL" if problems else "ok"
    return Row(
        "chain",
        f"{expected[0]}..{expected[-1]}",
        float(len(problems)),
        float("nan"),
        0.0 if verdict == "ok" else float("inf"),
        verdict,
        diagnosis="; ".join(problems),
        where=f"claimed {_span(chain)}; visited {got_txt}",
    )


def _few(ts: list[int]) -> str:
    return ", ".join(map(str, ts[:5])) + (f" (+{len(ts) - 5} more)" if len(ts) > 5 else "")


def check_loop(
    sample_fn: Callable[[Callable[[Any, Any], Any], tuple[int, ...], int], Any],
    diffusion: GaussianDiffusion,
    *,
    sampler: str = "ddpm",
    eta: float = 0.0,
    data: GaussianMixture | None = None,
    n: int = 10_000,
    seed: int = 0,
    alpha: float = LOOP_ALPHA,
    event_shape: tuple[int, ...] | None = None,
    t_map: str | Callable[[Array], Any] = "original",
    framework: str = "numpy",
    to_tensor: Callable[[Array, Any], Any] | None = None,
    to_numpy: Callable[[Any], Any] | None = None,
    name: str = "loop",
) -> Report:
    r"""Run ``sample_fn``'s whole loop with the oracle as its model and test the law of its output.

    Parameters
    ----------
    sample_fn : callable ``sample_fn(model, shape, seed) -> samples``
        Runs the implementation's own sampler from its own x_T ~ N(0, I) with its own RNG
        seeded by ``seed``, calling ``model(x_t, t)``, and returns ``shape``-shaped samples in
        the model's space (undo any output normalisation, e.g. lucidrains' ``(x + 1)/2``).
    diffusion : GaussianDiffusion
        What the loop claims to be: schedule (``.respace(timesteps)`` for a shorter chain),
        ``mean_type`` (the convention the oracle answers in) and ``var_type`` (DDPM).
    sampler : {"ddpm", "ddim"}
    eta : float
        DDIM's η (Song et al. 2021, Eq. 16).
    data : GaussianMixture, optional
        One Gaussian; default :func:`default_loop_data` of ``prod(event_shape)`` dimensions.
    n : int
        Samples, in one call (shape[0] = n).
    seed : int
        Passed to ``sample_fn``; fixed so the verdict is reproducible.
    alpha : float
        Total false-failure probability of the law rows (Bonferroni, exact null laws).
    event_shape : tuple of int, optional
        The shape of one sample, e.g. ``(C, H, W)``; default ``(data.dim,)``.
    t_map : {"original", "index"} or callable
        How the loop's t maps to original timesteps (see the module docstring).
    framework : {"numpy", "torch"}
        Default ``to_tensor``/``to_numpy`` hooks: identity, or ``torch.as_tensor`` with the
        dtype and device of x_t and ``.detach().cpu().numpy()``.
    to_tensor, to_numpy : callable, optional
        ``to_tensor(array, like)`` turns the oracle's output into the loop's type (``like`` is
        the x_t it was called with); ``to_numpy(x)`` turns x_t, t and the samples into arrays.
    name : str
        The report's name.

    Returns
    -------
    Report
        Rows ``chain``, ``output mean``, ``output variance``, ``output correlation`` (and
        ``loop``/``output`` when the loop raised or returned something unusable).
    """
    data, n, seed, alpha = _check_args(sample_fn, diffusion, data, n, seed, alpha, event_shape)
    sampler = choose(sampler, "sampler", _SAMPLERS)
    if not (callable(t_map) or t_map in _T_MAPS):
        raise ValueError(
            f"t_map must be 'original', 'index' or a callable mapping the loop's t (an int "
            f"array) to original timesteps, got {t_map!r}"
        )
    if event_shape is None:
        event_shape = (data.dim,)
    if not isinstance(event_shape, tuple) or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in event_shape
    ):
        raise TypeError(f"event_shape must be a tuple of positive ints, got {event_shape!r}")
    if math.prod(event_shape) != data.dim:
        raise ValueError(
            f"event_shape {event_shape} holds {math.prod(event_shape)} values but the data is "
            f"{data.dim}-dimensional; pass data=default_loop_data({math.prod(event_shape)}) or "
            "a matching shape"
        )
    tensor_hook, numpy_hook = _hooks(framework, to_tensor, to_numpy)
    moments = sampler_moments(data, diffusion, sampler=sampler, eta=eta)
    U, _ = data.eigenbasis(0)
    m = moments.mean if U is None else U.T @ moments.mean
    cov = moments.covariance if U is None else U.T @ moments.covariance @ U
    p = np.diag(cov).copy()
    chain = diffusion.schedule.timestep_map
    oracle: Callable[[Array, Array], Array] = (
        data.denoiser(diffusion)
        if diffusion.var_type.startswith("learned")
        else _AffineOracle(data, diffusion)
    )
    model = _RecordingModel(oracle, chain, t_map, numpy_hook, tensor_hook)
    shape = (n, *[int(s) for s in event_shape])
    label = f"{name} ({sampler}{f', η={eta:g}' if sampler == 'ddim' else ''})"
    K = 2 * data.dim + data.dim * (data.dim - 1) // 2
    notes = [
        f"n = {n} samples of shape {tuple(shape[1:])}, seed {seed}; claimed chain {_span(chain)}",
        f"law rows: {K} exact tests, Bonferroni: P(false FAIL) <= {alpha:g}",
    ]
    return Report(label, _run(sample_fn, model, shape, seed, numpy_hook, (U, m, p, alpha)), notes)


def _run(
    sample_fn: Callable[..., Any],
    model: _RecordingModel,
    shape: tuple[int, ...],
    seed: int,
    numpy_hook: Callable[[Any], Any],
    law: tuple[Array | None, Array, Array, float],
) -> list[Row]:
    chain = model.chain
    try:
        out = sample_fn(model, shape, seed)
    except _LoopCallError as exc:
        return [_chain_row(model, chain, False), _stopped(str(exc), model)]
    except Exception as exc:  # the implementation's own failure is a row, not a crash
        return [
            _chain_row(model, chain, False),
            _stopped(f"raised {type(exc).__name__}: {exc}", model),
        ]
    rows = [_chain_row(model, chain, True)]
    try:
        x = np.asarray(numpy_hook(out), dtype=np.float64)
    except Exception as exc:
        return [*rows, _bad_output(f"to_numpy raised {type(exc).__name__}: {exc}")]
    if x.shape != shape:
        return [*rows, _bad_output(f"returned shape {x.shape}, expected {shape}")]
    x = x.reshape(shape[0], -1)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.all(np.isfinite(x), axis=1)))
        return [*rows, _bad_output(f"{bad} of {shape[0]} samples are not finite")]
    return rows + _law_rows(x, *law)


def _stopped(msg: str, model: _RecordingModel) -> Row:
    last = (
        f"after {model.calls} model calls, the last at t={model.visits[-1]}"
        if model.visits
        else ("before calling the model")
    )
    msg = msg.replace("\n", " ")[:200]
    return Row("loop", "-", float("nan"), float("nan"), float("inf"), "FAIL", msg, where=last)


def _bad_output(msg: str) -> Row:
    return Row("output", "output", float("nan"), float("nan"), float("inf"), "FAIL", msg)
