r"""Losses, the variational bound, and their gradients with respect to the model output.

All gradients are derived by hand (no autograd) and checked against centred finite
differences in ``tests/test_losses.py``. Notation: n is the number of elements per example
(``mean_flat`` averages over them), ln 2 converts nats to bits.

* ``normal_kl``: KL(N(m₁, e^{l₁}) ‖ N(m₂, e^{l₂})) = ½(−1 + l₂ − l₁ + e^{l₁−l₂} + (m₁−m₂)² e^{−l₂}),
  ∂/∂m₂ = (m₂ − m₁) e^{−l₂},  ∂/∂l₂ = ½(1 − e^{l₁−l₂} − (m₁−m₂)² e^{−l₂}).
* ``discretized_gaussian_log_likelihood`` (Ho et al. 2020, Eq. 13): bins x ± 1/255, the edge
  bins extend to ±∞; with z± = (x − μ ± 1/255)e^{−s}, ∂z/∂μ = −e^{−s}, ∂z/∂s = −z.
* Hybrid loss (Nichol & Dhariwal 2021, §3.1): L_simple + λ·L_vlb with the mean detached in
  the L_vlb term, so its gradient reaches only the variance channels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from . import parameterisation as _par
from ._checks import check_batch
from .typing import Denoiser, DiffusionLike, ReverseStep

__all__ = [
    "approx_standard_normal_cdf",
    "calc_bpd_loop",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "normal_kl",
    "prior_bpd",
    "training_losses",
    "vb_terms_bpd",
]

LN2 = math.log(2.0)
_C = math.sqrt(2.0 / math.pi)
Array = np.ndarray


def mean_flat(x: Array) -> Array:
    """Mean over every axis but the first (batch) axis."""
    return np.mean(x, axis=tuple(range(1, np.ndim(x))))


def normal_kl(mean1, logvar1, mean2, logvar2, *, return_grad: bool = False):
    r"""Elementwise KL(N(mean1, e^{logvar1}) ‖ N(mean2, e^{logvar2})) in nats (broadcasting).

    Evaluated as ½(expm1(l₁−l₂) − (l₁−l₂) + (m₁−m₂)² e^{−l₂}): algebraically
    improved-diffusion's ``normal_kl`` (``losses.py:12-34``), with less rounding.

    With ``return_grad=True`` returns ``(kl, d_mean2, d_logvar2)``, the derivatives with
    respect to the second (model) distribution.
    """
    mean1, logvar1, mean2, logvar2 = (np.asarray(a) for a in (mean1, logvar1, mean2, logvar2))
    with np.errstate(over="ignore", invalid="ignore"):
        diff = mean1 - mean2
        inv2 = np.exp(-logvar2)
        dlv = logvar1 - logvar2
        # ½(e^{d} − 1 − d + Δm² e^{−l₂}) with expm1: exactly 0 for identical Gaussians and
        # no cancellation when the variances are close (improved-diffusion sums −1 + l₂ − l₁
        # + e^{l₁−l₂} left to right, which leaves a few ulp of garbage).
        em1 = np.expm1(dlv)
        kl = 0.5 * ((em1 - dlv) + diff**2 * inv2)
        if not return_grad:
            return kl
        return kl, -diff * inv2, 0.5 * (-em1 - diff**2 * inv2)


def approx_standard_normal_cdf(x: Array) -> Array:
    r"""Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))), as every reference implementation
    (max absolute error 1.8e-4 against the exact Φ)."""
    x = np.asarray(x)
    return 0.5 * (1.0 + np.tanh(_C * (x + 0.044715 * x**3)))


def _cdf_and_pdf(z: Array, cdf: str) -> tuple[Array, Array]:
    if cdf == "erf":
        return special.ndtr(z), np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    th = np.tanh(_C * (z + 0.044715 * z**3))
    return 0.5 * (1.0 + th), 0.5 * (1.0 - th**2) * _C * (1.0 + 3 * 0.044715 * z**2)


def discretized_gaussian_log_likelihood(
    x: Array,
    *,
    means: Array,
    log_scales: Array,
    cdf: str = "tanh",
    return_grad: bool = False,
    bin_width: float = 2.0 / 255.0,
):
    r"""log P(x) for data in [−1, 1] discretised to 256 levels, under N(means, e^{2·log_scales}).

    ``bin_width`` is the spacing of the data levels in [−1, 1]: 2/255 for 8-bit images (the
    default, the references' decoder), 1/8 for 17 grey levels. For 8-bit data:
    interior bins are [x − 1/255, x + 1/255]; for x < −0.999 the bin is (−∞, x + 1/255] and
    for x > 0.999 it is [x − 1/255, ∞) (Ho et al. 2020, Eq. 13). Probabilities are clamped
    at 1e-12 before the log, as improved-diffusion ``losses.py:50-77``.

    Parameters
    ----------
    cdf : {"tanh", "erf"}
        The references' tanh approximation of Φ, or the exact Φ.
    return_grad : bool
        Also return ``(d/d means, d/d log_scales)`` of the log-likelihood (zero where a
        clamp is active).
    """
    x, means, log_scales = np.broadcast_arrays(*(np.asarray(a) for a in (x, means, log_scales)))
    if cdf not in ("tanh", "erf"):
        raise ValueError(f"cdf must be 'tanh' or 'erf', got {cdf!r}")
    centered = x - means
    inv = np.exp(-log_scales)
    half = bin_width / 2.0  # 1/255 for 8-bit data; 1/16 for 17 grey levels
    plus_in = inv * (centered + half)
    min_in = inv * (centered - half)
    cdf_plus, pdf_plus = _cdf_and_pdf(plus_in, cdf)
    cdf_min, pdf_min = _cdf_and_pdf(min_in, cdf)
    if cdf == "erf":
        # exact Φ, evaluated without cancellation: upper-tail bins as Φ(−z₋) − Φ(−z₊)
        one_minus = special.ndtr(-min_in)
        upper = min_in > 0
        delta = np.where(upper, special.ndtr(-min_in) - special.ndtr(-plus_in), cdf_plus - cdf_min)
    else:  # the references' arithmetic, verbatim
        one_minus = 1.0 - cdf_min
        delta = cdf_plus - cdf_min
    # the edge bins: ±0.999 as the references for 8-bit data, ±(1 − width/4) otherwise
    edge = 0.999 if bin_width == 2.0 / 255.0 else 1.0 - bin_width / 4.0
    low, high = x < -edge, x > edge
    prob = np.where(low, cdf_plus, np.where(high, one_minus, delta))
    log_probs = np.log(np.maximum(prob, 1e-12))
    if not return_grad:
        return log_probs
    # d prob / d z± and dz/dμ = −inv, dz/ds = −z
    dprob_dmu = np.where(
        low, -pdf_plus * inv, np.where(high, pdf_min * inv, -(pdf_plus - pdf_min) * inv)
    )
    dprob_ds = np.where(
        low,
        -pdf_plus * plus_in,
        np.where(high, pdf_min * min_in, -(pdf_plus * plus_in - pdf_min * min_in)),
    )
    live = prob > 1e-12
    safe = np.where(live, prob, 1.0)
    return log_probs, np.where(live, dprob_dmu / safe, 0.0), np.where(live, dprob_ds / safe, 0.0)


# ------------------------------------------------------------------ the variational bound


def chain_to_output(
    d: DiffusionLike,
    r: ReverseStep,
    t: Array,
    d_mean: Array,
    d_logvar: Array,
    clip_denoised: bool,
) -> Array:
    """d(loss)/d(model_output) from d/d(model mean) and d/d(model log-variance)."""
    w, n, c = r.dtype, r.x_t.ndim, _par.gather
    if d.mean_type == "x_prev":
        g_mean = d_mean
    else:
        form = d.profile.xstart_from_eps
        dx0 = _par.dxstart_dmean_part(d.schedule, d.mean_type, t, n, w, form=form)
        if clip_denoised:  # clip's derivative: 1 inside [−1, 1], 0 outside
            dx0 = dx0 * (np.abs(r.raw_xstart) <= 1)
        g_mean = d_mean * c(d.schedule.posterior_mean_coef1, t, n, w) * dx0
    if d.var_type in ("fixed_small", "fixed_large"):
        return g_mean
    assert r.var_values is not None  # a learned variance has its channels
    vv = r.var_values.astype(w)
    if d.var_type == "learned":
        dlv = 1.0 / vv if d.profile.learned_output == "variance" else 1.0
    else:
        dlv = (c(d.tables.log_betas, t, n, w) - c(d.tables.small_logvar, t, n, w)) / 2
    return np.concatenate([g_mean, d_logvar * dlv], axis=1)


def vb_terms_bpd(
    d: DiffusionLike,
    model_output,
    x0,
    x_t,
    t,
    clip_denoised: bool = True,
    *,
    return_grad: bool = False,
    decoder: str = "discretized",
    bin_width: float = 2.0 / 255.0,
) -> dict[str, Array]:
    r"""The per-step term of the variational bound, in bits per dimension.

    For t > 0: KL(q(x_{t−1} | x_t, x₀) ‖ p(x_{t−1} | x_t)) (Ho et al. 2020, Eq. 5, L_{t−1});
    for t = 0: −log p(x₀ | x₁) under the decoder (L₀): ``"discretized"`` (Eq. 13, 8-bit
    data in [−1, 1]) or ``"gaussian"`` (the density N(x₀; μ, σ²), for continuous data; then
    the bound is on a differential entropy and may be negative). The true log-variance is
    the clipped one (improved-diffusion ``_vb_terms_bpd``).

    Returns
    -------
    dict with ``output`` (B,) in bits, ``pred_xstart``, and with ``return_grad=True`` also
    ``grad``: d output_i / d model_output_i (model_output's shape).
    """
    x0 = check_batch(x0, "x0")
    x_t = check_batch(x_t, "x_t", x0)
    t = d.check_t(t, x0.shape[0])
    r = d.reverse(model_output, x_t, t, clip_denoised=clip_denoised)
    w, n = r.dtype, x0.ndim
    x0w = x0.astype(w)
    true_mean = d.posterior_mean(x0w, r.x_t, t, w)
    true_logvar = np.broadcast_to(_par.gather(d.tables.small_logvar, t, n, w), x0.shape)
    per = float(np.prod(x0.shape[1:])) * LN2
    kl, dkl_m, dkl_lv = normal_kl(true_mean, true_logvar, r.mean, r.log_variance, return_grad=True)
    if decoder == "gaussian":
        lv = r.log_variance
        with np.errstate(over="ignore", invalid="ignore"):
            z2 = (x0w - r.mean) ** 2 * np.exp(-lv)
            ll = -0.5 * (math.log(2 * math.pi) + lv + z2)
            dll_m = (x0w - r.mean) * np.exp(-lv)
            dll_s = 2 * (-0.5 + 0.5 * z2)  # d/d(log σ) = 2·d/d(log σ²)
    elif decoder == "discretized":
        ll, dll_m, dll_s = discretized_gaussian_log_likelihood(
            x0w,
            means=r.mean,
            log_scales=0.5 * r.log_variance,
            cdf=d.profile.cdf,
            return_grad=True,
            bin_width=bin_width,
        )
    else:
        raise ValueError(f"decoder must be 'discretized' or 'gaussian', got {decoder!r}")
    is0 = (t == 0).reshape((-1,) + (1,) * (n - 1))
    with np.errstate(invalid="ignore"):
        out = np.where(t == 0, mean_flat(-ll), mean_flat(kl)) / LN2
    res = {"output": out, "pred_xstart": r.pred_xstart.astype(x0.dtype)}
    if return_grad:
        d_mean = np.where(is0, -dll_m, dkl_m) / per
        d_logvar = np.where(is0, -0.5 * dll_s, dkl_lv) / per
        res["grad"] = chain_to_output(d, r, t, d_mean, d_logvar, clip_denoised).astype(
            np.asarray(model_output).dtype
        )
    return res


def prior_bpd(d: DiffusionLike, x0) -> Array:
    r"""KL(q(x_{T−1} | x₀) ‖ N(0, I)) in bits per dimension, shape (B,) (the prior term L_T)."""
    x0 = check_batch(x0, "x0")
    t = np.full(x0.shape[0], d.num_timesteps - 1, dtype=np.int64)
    s, w = d.schedule, np.dtype(np.float64)
    mean = _par.gather(s.sqrt_alphas_cumprod, t, x0.ndim, w) * x0.astype(w)
    logvar = _par.gather(s.log_one_minus_alphas_cumprod, t, x0.ndim, w)
    return mean_flat(normal_kl(mean, logvar, 0.0, 0.0)) / LN2


def _hybrid_scale(d: DiffusionLike) -> float:
    if d.loss_type != "rescaled_mse":
        return 1.0
    return d.num_timesteps / 1000.0 if d.profile.hybrid_vb_scale == "full_bound" else 1e-3


def training_losses(d: DiffusionLike, model_output, x0, t, noise, *, x_t=None):
    r"""Per-example training loss and its gradient with respect to ``model_output``.

    ``x_t = q_sample(x0, t, noise)`` (or the ``x_t`` given); then, by ``loss_type``:

    * ``kl`` / ``rescaled_kl``: the VLB term (``clip_denoised=False``), × T when rescaled.
    * ``mse`` / ``rescaled_mse``: ``mean_flat((target − out)²)`` with target ε, x₀, v or the
      posterior mean; with a learned variance plus the VLB term on the detached mean, scaled
      by T/1000 for ``rescaled_mse`` (the hybrid loss, λ = 0.001 on the full bound) or by
      0.001 under the ``per_step`` profile option (lucidrains).

    Returns
    -------
    terms : dict
        ``loss`` (B,), and ``mse`` and/or ``vb`` (B,) where they apply.
    grad : ndarray
        ``grad[i] = ∂ loss_i / ∂ model_output[i]``; divide by B for the batch mean.
    """
    x0 = check_batch(x0, "x0")
    noise = check_batch(noise, "noise", x0)
    t = d.check_t(t, x0.shape[0])
    # x_t may be passed when the caller already formed it (e.g. with a fused kernel)
    x_t = d.q_sample(x0, t, noise) if x_t is None else check_batch(x_t, "x_t", x0)
    out_dtype = np.asarray(model_output).dtype
    terms: dict[str, Array] = {}
    if d.loss_type in ("kl", "rescaled_kl"):
        vb = vb_terms_bpd(d, model_output, x0, x_t, t, clip_denoised=False, return_grad=True)
        scale = d.num_timesteps if d.loss_type == "rescaled_kl" else 1.0
        terms["loss"] = vb["output"] * scale
        return terms, (vb["grad"] * scale).astype(out_dtype)
    mean_part, _ = d.split_output(model_output, x0)
    w = d.work_dtype(x0)
    mp = mean_part.astype(w)
    if d.mean_type == "eps":
        target = noise.astype(w)
    elif d.mean_type == "x0":
        target = x0.astype(w)
    elif d.mean_type == "v":
        target = d.predict_v(x0.astype(w), t, noise.astype(w))
    else:
        target = d.posterior_mean(x0.astype(w), x_t.astype(w), t, w)
    n = float(np.prod(x0.shape[1:]))
    terms["mse"] = mean_flat((target - mp) ** 2)
    g_mean = 2.0 * (mp - target) / n
    if d.var_type in ("learned", "learned_range"):
        vb = vb_terms_bpd(d, model_output, x0, x_t, t, clip_denoised=False, return_grad=True)
        scale = _hybrid_scale(d)
        terms["vb"] = vb["output"] * scale
        terms["loss"] = terms["mse"] + terms["vb"]
        C = x0.shape[1]
        grad = vb["grad"].astype(w) * scale
        grad[:, :C] = g_mean  # the mean is detached in the VLB term
        return terms, grad.astype(out_dtype)
    terms["loss"] = terms["mse"]
    return terms, g_mean.astype(out_dtype)


def calc_bpd_loop(
    d: DiffusionLike,
    denoiser: Denoiser,
    x0,
    *,
    clip_denoised: bool = True,
    seed: int = 0,
    noise: Array | None = None,
    decoder: str = "discretized",
    bin_width: float = 2.0 / 255.0,
    progress: bool | None = False,
) -> dict[str, Array]:
    r"""The full variational bound of ``denoiser`` on ``x0``, in bits per dimension
    (``decoder="gaussian"`` for continuous data: multiply by D·ln 2 for nats per example).

    For every t (from T−1 down to 0, as improved-diffusion) draws ε, forms x_t, calls
    ``denoiser(x_t, timestep_map[t])`` and evaluates the VLB term.

    Parameters
    ----------
    denoiser : callable ``(x_t, t) -> model_output``, ``t`` the original timesteps.
    noise : ndarray (T, *x0.shape), optional
        ``noise[t]`` is the ε used at step t; otherwise drawn from ``default_rng(seed)``
        in the order t = T−1, …, 0.
    progress : bool or None, default False
        A tqdm bar over the T steps on stderr; ``None``: only when stderr is a terminal
        (:mod:`npddpm._progress`). The result does not depend on it.

    Returns
    -------
    dict with ``total_bpd`` (B,) = Σ_t vb + prior, ``prior_bpd`` (B,), and ``vb``,
    ``xstart_mse``, ``mse`` (B, T) **indexed by t** (improved-diffusion stacks them from
    T−1 down to 0; reverse the columns to compare).
    """
    x0 = check_batch(x0, "x0")
    T, B = d.num_timesteps, x0.shape[0]
    if noise is not None:
        noise = np.asarray(noise)
        if noise.shape != (T, *x0.shape):
            raise ValueError(f"noise must have shape {(T, *x0.shape)}, got {noise.shape}")
    rng = np.random.default_rng(seed)
    vb, xmse, mse = (np.zeros((B, T)) for _ in range(3))
    from ._progress import bar

    with bar(T, "nll", progress) as pbar:
        for t in range(T - 1, -1, -1):
            _bpd_step(
                d, denoiser, x0, t, noise, rng, clip_denoised, decoder, bin_width, vb, xmse, mse
            )
            pbar.update(1)
    prior = prior_bpd(d, x0)
    return {
        "total_bpd": vb.sum(axis=1) + prior,
        "prior_bpd": prior,
        "vb": vb,
        "xstart_mse": xmse,
        "mse": mse,
    }


def _bpd_step(d, denoiser, x0, t, noise, rng, clip_denoised, decoder, bin_width, vb, xmse, mse):
    """Step t of :func:`calc_bpd_loop`: column t of ``vb``, ``xmse``, ``mse``."""
    B = x0.shape[0]
    tb = np.full(B, t, dtype=np.int64)
    eps = noise[t] if noise is not None else rng.standard_normal(x0.shape).astype(x0.dtype)
    x_t = d.q_sample(x0, tb, eps)
    out = vb_terms_bpd(
        d,
        denoiser(x_t, d.model_timesteps(tb)),
        x0,
        x_t,
        tb,
        clip_denoised,
        decoder=decoder,
        bin_width=bin_width,
    )
    vb[:, t] = out["output"]
    xmse[:, t] = mean_flat((out["pred_xstart"].astype(np.float64) - x0) ** 2)
    eps_hat = d.predict_eps_from_xstart(x_t, tb, out["pred_xstart"])
    mse[:, t] = mean_flat((eps_hat.astype(np.float64) - eps) ** 2)
