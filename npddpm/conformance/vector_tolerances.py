r"""The tolerances of :func:`npddpm.conformance.vectors.compare_vectors`: for each case kind
and output, an elementwise bound on |result − expected| at the precision the results declare,
and the comparison that turns it into a row's worst ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..diffusion import GaussianDiffusion
from ..schedules import Schedule
from .tolerances import machine_eps, noise_tolerance, step_tolerance, table_tolerance

__all__ = ["case_tolerances", "compare_output", "where_in_case"]


# --------------------------------------------------------------------------- tolerances
#
# Every tolerance below is an absolute, elementwise bound ``tol`` on |result − expected| for
# an implementation working in precision eps (the results' declared dtype), built from the
# public bounds of :mod:`npddpm.conformance.tolerances`: ``k·eps`` times a first-order bound
# on how far the rounding of that precision can move the quantity. ``ratio = max(err/tol)``;
# a row agrees when ratio <= 1.


class _Chain:
    """The per-index quantities of a (respaced) chain, from its stored ``alphas_cumprod``."""

    def __init__(self, ab: np.ndarray) -> None:
        self.ab = np.asarray(ab, dtype=np.float64)
        self.ab_prev = np.append(1.0, self.ab[:-1])
        self.beta = 1.0 - self.ab / self.ab_prev

    def variance_cond(self, t: int) -> float:
        r"""The relative conditioning of β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t) (and of β_t, and
        of the learned interpolation between their logs) for a float implementation that
        forms them itself: each factor with relative error eps/(factor), as the noise term's
        c_σ of :mod:`~npddpm.conformance.tolerances` but not halved by a square root. The
        clipped tables read index 1 at t = 0, so the conditioning of index max(t, 1) is
        added; 1 − ᾱ_{−1} = 1 − 1 = 0 is exact and contributes nothing."""
        c = 1.0
        for s in {t, max(t, 1)} & set(range(self.ab.size)):
            terms = [self.beta[s], 1.0 - self.ab[s], 1.0 - self.ab_prev[s]]
            c += sum(1.0 / v for v in terms if v > 0)
        return c


def _per_row(t: np.ndarray, fn: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape)
    for i, ti in enumerate(np.asarray(t, dtype=np.int64)):
        out[i] = fn(i, int(ti))
    return out


def _step_tols(a: dict, names: tuple[str, ...], dtype: str, k: float) -> np.ndarray:
    """:func:`step_tolerance` row by row, with ᾱ_t of each row's index into the chain and
    the row's magnitudes of the named inputs (the mean channels of ``model_output``)."""
    ch = _Chain(a["alphas_cumprod"])
    D = a["x_t"].shape[1] if "x_t" in a else a["x0"].shape[1]
    arrays = [a[n][:, :D] for n in names]
    shape = arrays[0].shape
    return _per_row(
        a["t"],
        lambda i, t: step_tolerance(float(ch.ab[t]), *(x[i] for x in arrays), dtype=dtype, k=k),
        shape,
    )


def _variance_tols(a: dict, e: np.ndarray, log: bool, dtype: str, k: float) -> np.ndarray:
    """Variance: relative ``k·eps·c_v`` (:meth:`_Chain.variance_cond`; a learned variance
    e^v adds eps·|v|, far below c_v >= 1 + 1/β_t); its log: absolute ``k·eps·(c_v + |log|)``
    (a relative error of the argument is an absolute error of the log, plus the log's own
    rounding)."""
    ch, keps = _Chain(a["alphas_cumprod"]), k * machine_eps(dtype)

    def row(i: int, t: int) -> np.ndarray:
        c = ch.variance_cond(t)
        return keps * (c + np.abs(e[i])) if log else keps * c * np.abs(e[i])

    return _per_row(a["t"], row, e.shape)


def _reference(case: dict, a: dict, **kw: Any) -> GaussianDiffusion:
    """npddpm's diffusion on the case's own chain (its ``alphas_cumprod``) with the case's
    options: the reference σ and loss terms the tolerances scale with."""
    ab = np.asarray(a["alphas_cumprod"], dtype=np.float64)
    s = Schedule(1.0 - ab / np.append(1.0, ab[:-1]))
    o = case.get("options", {})
    opts = {n: o[n] for n in ("mean_type", "var_type", "loss_type") if n in o}
    return GaussianDiffusion(s, profile=o.get("profile", "improved_diffusion"), **opts, **kw)


def _noise_tols(a: dict, sigma: np.ndarray, dtype: str, k: float) -> np.ndarray:
    """:func:`noise_tolerance` of the noise term σ·z of each row's step against no noise
    (z_b = 0; σ the reference's, elementwise, 0 where the step adds none, passed inside
    z_a = σ·z with sigma = 1, which is the same bound): σ's rounding c_σ·σ·|z| and that of
    the product σ·z; the outputs' own rounding is in the step term."""
    ch = _Chain(a["alphas_cumprod"])
    z, zero = a["noise"], np.zeros(())
    return _per_row(
        a["t"],
        lambda i, t: noise_tolerance(
            float(ch.ab[t]),
            float(ch.ab_prev[t]),
            1.0,
            sigma[i] * z[i],
            zero,
            zero,
            zero,
            dtype=dtype,
            k=k,
        ),
        z.shape,
    )


def _schedule_tols(e: dict, name: str, dtype: str) -> np.ndarray:
    r"""The 13 tables of a float implementation that builds them itself, each from ᾱ's
    relative bound r_t = :func:`table_tolerance` (a cumulative product of t + 1 rounded
    factors plus the cast of β; its factor 4 is the safety multiplier), with u_t = 1/(1 − ᾱ_t)
    the amplification of an absolute error of ᾱ_t ≈ r_t·ᾱ_t in 1 − ᾱ_t
    (ᾱ_t·u_t + 1 = u_t)."""
    ab = e["alphas_cumprod"]
    T = ab.size
    t = np.arange(T)
    # table_tolerance counts each factor 1 − β_s as rounded relatively, but a β_s near 1
    # (cosine's clip at 0.999) makes 1 − β_s cancel: the cast of β_s (relative eps) is a
    # relative error eps·β_s/(1 − β_s) of α_s, accumulated by the product (with
    # table_tolerance's factor 4)
    b = e["betas"]
    with np.errstate(divide="ignore"):
        cancel = 4.0 * machine_eps(dtype) * np.cumsum(np.where(b < 1, b / (1.0 - b), np.inf))
    r = table_tolerance(t, dtype) + cancel
    r_next = table_tolerance(t + 1, dtype) + np.append(cancel[1:], cancel[-1])
    with np.errstate(divide="ignore"):
        u = 1.0 / (1.0 - ab)
    u = np.where(np.isfinite(u), u, 0.0)  # ᾱ = 1 exactly only for a degenerate β
    u_prev = np.append(0.0, u[:-1])  # 1 − ᾱ_{−1} = 0 is exact: nothing to amplify
    x = np.abs(e[name])
    if name in ("betas",):
        # β is defined in float64 by every reference (np.linspace, betas_for_alpha_bar in
        # Python floats) and cast, or a float linspace: a few roundings, r_0 = 8·eps
        return r[0] * x
    if name in ("alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_recip_alphas_cumprod"):
        # ᾱ_t: r_t; its square root halves the relative error and 1/√ adds one rounding
        return r * x
    if name == "alphas_cumprod_prev":
        return r * x  # ᾱ_{t−1}: r_{t−1} <= r_t (exactly 1 at t = 0)
    if name == "alphas_cumprod_next":
        return r_next * x  # ᾱ_{t+1}: r_{t+1} (exactly 0 at T − 1)
    if name == "sqrt_one_minus_alphas_cumprod":
        return r * u * x  # 1 − ᾱ_t: relative r_t·ᾱ_t·u_t + eps <= r_t·u_t; √ halves it
    if name == "sqrt_recipm1_alphas_cumprod":
        # √(1/ᾱ − 1): 1/ᾱ carries r_t/ᾱ absolutely, relative to (1 − ᾱ)/ᾱ that is r_t·u_t
        return r * u * x
    if name == "log_one_minus_alphas_cumprod":
        # the relative error r_t·u_t of 1 − ᾱ_t is an absolute error of its log, plus the
        # log's rounding (relative to |log|): absolute, since log(1 − ᾱ) → 0 as ᾱ → 0
        return r * (u + x)
    # β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t) and the coefficients: the relative errors of the
    # factors add: β (r_0), 1 − ᾱ_{t−1} (r_t·u_{t−1}), 1 − ᾱ_t (r_t·u_t), √ᾱ_{t−1} (r_t/2)
    rel_pv = r[0] + r * (u_prev + u)
    if name == "posterior_variance":
        return rel_pv * x  # exactly 0 at t = 0
    if name == "posterior_log_variance_clipped":
        # log [β̃_1, β̃_1, β̃_2, …]: β̃'s relative bound at index max(t, 1), absolute in the log
        src = np.maximum(t, 1) if T > 1 else t
        return rel_pv[src] + r * x
    if name == "posterior_mean_coef1":
        return (r[0] + r * (1.0 + u)) * x  # β·√ᾱ_{t−1}/(1 − ᾱ_t)
    if name == "posterior_mean_coef2":
        return (r * (1.0 + u_prev + u)) * x  # (1 − ᾱ_{t−1})·√α_t/(1 − ᾱ_t), 0 at t = 0
    raise KeyError(name)


def _oracle_tols(a: dict, e: np.ndarray, name: str, dtype: str, k: float) -> np.ndarray:
    r"""The exact denoiser of an isotropic mixture: responsibilities are a softmax of
    exponents E_k = |x − √ᾱμ_k|²/(2s_k) + …, s_k = ᾱv_k + 1 − ᾱ, each rounded relatively, so
    they move by eps·(1 + max E); each component's term is bounded by its uncancelled
    magnitude, M = (|x| + √ᾱ·max|μ|)/min s for the score (×√(1 − ᾱ) for ε, and
    max|μ| + √ᾱ·max v·M for x̂₀). ``tol = k·eps·(1 + max E)·(M + 1)``."""
    keps = k * machine_eps(dtype)
    ab = np.asarray(a["alphas_cumprod"], dtype=np.float64)[a["t"]][:, None]
    mu, v, x = a["means"], np.asarray(a["variances"]), a["x_t"]
    s = ab * v[None, :] + (1.0 - ab)  # (B, K)
    d2 = np.stack([np.sum((x - np.sqrt(ab) * mu[j]) ** 2, axis=1) for j in range(len(v))], 1)
    E = np.max(d2 / (2 * s) + 0.5 * x.shape[1] * np.abs(np.log(s)), axis=1, keepdims=True)
    m_score = (np.abs(x) + np.sqrt(ab) * np.max(np.abs(mu))) / np.min(s, axis=1, keepdims=True)
    M = {
        "score": m_score,
        "eps": np.sqrt(1.0 - ab) * m_score,
        "x0_mean": np.max(np.abs(mu)) + np.sqrt(ab) * np.max(v) * m_score,
    }[name]
    return np.broadcast_to(keps * (1.0 + E) * (M + 1.0), e.shape)


def _trajectory_tols(a: dict, e: np.ndarray, dtype: str, k: float) -> np.ndarray:
    r"""A deterministic DDIM trajectory (``trajectory[i]`` at chain index N − i): the errors
    of each step, :func:`step_tolerance` at that step's ᾱ and state, summed along the chain
    (first order, earlier errors carried forward unamplified: an assumption that the DDIM map
    of the exact denoiser does not expand these trajectories' rounding, not a proven bound;
    correct float32 results measure 0.026 of it); ``trajectory[0] = x_T`` is only cast."""
    ab = np.asarray(a["alphas_cumprod"], dtype=np.float64)
    N = ab.size
    tol = np.empty(e.shape)
    tol[0] = k * machine_eps(dtype) * np.abs(e[0])
    for i in range(1, e.shape[0]):
        t = N - i
        tol[i] = tol[i - 1] + step_tolerance(float(ab[t]), e[i - 1], e[i], dtype=dtype, k=k)
    return tol


def _loss_tols(case: dict, a: dict, e: dict, dtype: str, k: float) -> dict[str, np.ndarray]:
    r"""The losses of one case, first order in the errors of the quantities they are built
    from, recomputed here by npddpm (float64) from the case's inputs:

    * δm: the step bound (:func:`step_tolerance` of x_t, the mean channels, x₀ and ε) of
      either Gaussian mean; δl = ``k·eps·(c_v + |l₁| + |l₂|)`` of either log-variance
      (:meth:`_Chain.variance_cond`).
    * ``mse = mean((target − out)²)``: ``2·√mse·δ̄ + δ̄² + k·eps·mse`` (Cauchy–Schwarz, δ̄ the
      row's largest δm); its gradient 2(out − target)/n: ``2δm/n + k·eps·|g|``.
    * the KL ½(e^{l₁−l₂} − 1 − (l₁ − l₂) + Δm²e^{−l₂}) per element: its derivatives times
      the errors, ``e^{−l₂}(2|Δm|δm + δm²) + (1 + e^{d} + Δm²e^{−l₂})·δl``, plus the
      rounding of the sum as improved-diffusion forms it, ``k·eps·(1 + |l₁| + |l₂| + e^{d} +
      Δm²e^{−l₂})``.
    * the decoder at t = 0, log p with p = Φ(z₊) − Φ(z₋): Φ is evaluated to absolute
      ``k·eps``, so log p carries ``2·k·eps/p`` (a float32 decoder cannot resolve bins with
      p ≲ eps; their tolerance is wide because the result is); plus |∂/∂μ|·δm + |∂/∂log σ|·δl/2.
    * the gradients: the error of each derivative above (the same products, differentiated
      once more), chained to the model output with npddpm's chain rule in absolute values.
    """
    from ..losses import LN2, chain_to_output, discretized_gaussian_log_likelihood, normal_kl

    keps = k * machine_eps(dtype)
    d = _reference(case, a)
    x0, noise, mo, t = a["x0"], a["noise"], a["model_output"], a["t"]
    B, D = x0.shape
    with np.errstate(all="ignore"):
        x_t = d.q_sample(x0, t, noise)
        r = d.reverse(mo, x_t, t, clip_denoised=False)
        ch = _Chain(a["alphas_cumprod"])
        dm_tol = _step_tols({**a, "x_t": x_t}, ("x_t", "model_output", "x0", "noise"), dtype, k)
        cv = np.array([ch.variance_cond(int(ti)) for ti in t])[:, None]
        mu = d.posterior_mean(x0, x_t, t, np.dtype(np.float64))
        l1 = d.tables.small_logvar[t][:, None] + np.zeros((B, D))
        l2 = r.log_variance + np.zeros((B, D))
        dl = keps * (cv + np.abs(l1) + np.abs(l2))
        inv2, dmu, ed = np.exp(-l2), np.abs(mu - r.mean), np.exp(l1 - l2)
        q = dmu**2 * inv2
        kl_err = inv2 * (2 * dmu * dm_tol + dm_tol**2) + (1 + ed + q) * dl
        kl_err += keps * (1 + np.abs(l1) + np.abs(l2) + ed + q)
        _, g_m, g_l = normal_kl(mu, l1, r.mean, r.log_variance, return_grad=True)
        gm_err = inv2 * (dm_tol + dmu * dl) + keps * np.abs(g_m)
        gl_err = 0.5 * (2 * ed * dl + 2 * dmu * inv2 * dm_tol + q * dl) + keps * np.abs(g_l)
        ll, d_mu, d_s = discretized_gaussian_log_likelihood(
            x0, means=r.mean, log_scales=0.5 * r.log_variance, cdf=d.profile.cdf, return_grad=True
        )
        p = np.exp(ll)
        rel_p = 2 * keps / p
        sig = np.exp(0.5 * l2)
        zz = (np.abs(x0 - r.mean) + 1.0 / 255.0) / sig
        dz = (1 + zz) ** 2 * (dm_tol / sig + dl)  # the relative move of pdf(z±) and Φ(z±)
        dec_err = np.abs(d_mu) * dm_tol + np.abs(d_s) * dl / 2 + rel_p + keps * np.abs(ll)
        g_dec = np.abs(d_mu) + np.abs(d_s) + 1.0 / (sig * p)
        is0 = (t == 0)[:, None]
        vb_err = np.where(is0, dec_err, kl_err)
        em = np.where(is0, g_dec * (rel_p + dz), gm_err)
        el = np.where(is0, 0.5 * g_dec * (rel_p + dz), gl_err)
        per = D * LN2
        chained = np.abs(chain_to_output(d, r, t, em / per, el / per, False))
        # the chain factors themselves (coef1·∂x̂₀/∂out, ∂log σ²/∂v) carry the relative
        # bound of the tables they are built from: c_v, and √(1/ᾱ) of ∂x̂₀/∂out
        gm0, gl0 = np.where(is0, -d_mu, g_m) / per, np.where(is0, -0.5 * d_s, g_l) / per
        # the chain factors themselves: coef1·∂x̂₀/∂out carries the relative bound of its
        # tables (c_v, and √(1/ᾱ) of ∂x̂₀/∂out); learned_range's ½(log β − log β̃) is a
        # difference of two logs, each off by δl absolutely (it cancels at large t, where
        # β̃ ≈ β); learned's ∂log σ²/∂v is 1 (or 1/v, relative eps)
        rel_chain = keps * (cv + np.sqrt(1.0 / ch.ab[t])[:, None])
        zero = np.zeros_like(gl0)
        chained += np.abs(chain_to_output(d, r, t, np.abs(gm0), zero, False)) * rel_chain
        if d.var_type == "learned_range":
            span = 0.5 * np.abs(d.tables.log_betas[t] - d.tables.small_logvar[t])[:, None]
            chained[:, D:] += np.abs(gl0) * (span * keps + dl)
        elif d.var_type == "learned":
            chained[:, D:] += np.abs(gl0) * keps * (1.0 + np.abs(mo[:, D:]))
    lt = case["options"].get("loss_type", "mse")
    T = ch.ab.size
    scale = {"rescaled_kl": float(T), "kl": 1.0}.get(
        lt, (T / 1000.0 if lt == "rescaled_mse" else 1.0)
    )
    vb_tol = scale * np.mean(vb_err, axis=1) / LN2
    out: dict[str, np.ndarray] = {}
    learned = d.var_type in ("learned", "learned_range")
    if lt in ("kl", "rescaled_kl"):
        out["terms_loss"] = vb_tol
        out["grad"] = scale * chained
    else:
        L = e["terms_mse"]
        db = dm_tol.max(axis=1)
        mse_tol = 2 * np.sqrt(L) * db + db**2 + keps * L
        out["terms_mse"] = mse_tol
        g_mse = 2 * dm_tol / D + keps * np.abs(e["grad"][:, :D])
        if learned:
            out["terms_vb"] = vb_tol
            out["terms_loss"] = mse_tol + vb_tol
            out["grad"] = np.concatenate([g_mse, scale * chained[:, D:]], axis=1)
        else:
            out["terms_loss"] = mse_tol
            out["grad"] = g_mse
    # the prior term KL(N(√ᾱx₀, 1 − ᾱ) ‖ N(0, 1)) at the last index: the rounding of
    # ½(−1 − l + e^l + ᾱx₀²) as summed, l = log(1 − ᾱ) (well conditioned: ᾱ ≈ 0 there)
    ab_T, l_T = ch.ab[-1], np.log(1.0 - ch.ab[-1])
    out["prior_bpd"] = keps * np.mean(1 + abs(l_T) + np.exp(l_T) + ab_T * x0**2 + 1.0, axis=1) / LN2
    return out


def case_tolerances(case: dict, a: dict, e: dict, dtype: str, k: float) -> dict[str, np.ndarray]:
    """The tolerance of every output of ``case`` (``a``: its inputs and expected outputs)."""
    kind, outs = case["kind"], case["outputs"]
    if kind == "spacing":
        return {n: np.zeros(e[n].shape) for n in outs}  # integers: exact
    if kind == "schedule":
        return {n: _schedule_tols(e, n, dtype) for n in outs}
    if kind == "oracle":
        return {n: _oracle_tols(a, e[n], n, dtype, k) for n in outs}
    if kind == "oracle_trajectory":
        return {"trajectory": _trajectory_tols(a, e["trajectory"], dtype, k)}
    if kind == "losses":
        return _loss_tols(case, a, e, dtype, k)
    if kind == "q_sample":
        return {"x_t": _step_tols(a, ("x0", "noise"), dtype, k)}
    if kind == "q_posterior":
        return {
            "mean": _step_tols(a, ("x0", "x_t"), dtype, k),
            "variance": _variance_tols(a, e["variance"], False, dtype, k),
            "log_variance": _variance_tols(a, e["log_variance"], True, dtype, k),
        }
    step = _step_tols(a, ("x_t", "model_output"), dtype, k)
    o = case["options"]
    pred = step
    if o.get("mean_type") == "x_prev":
        pred = _xprev_xstart_tols(a, dtype, k)
    if kind == "p_mean_variance":
        return {
            "mean": step,
            "pred_xstart": pred,
            "variance": _variance_tols(a, e["variance"], False, dtype, k),
            "log_variance": _variance_tols(a, e["log_variance"], True, dtype, k),
        }
    d = _reference(case, a)
    t = a["t"]
    mask = (t != 0)[:, None]  # improved-diffusion: no noise at index 0
    with np.errstate(all="ignore"):
        if kind == "ddpm_step":
            lv = d.p_mean_variance(a["model_output"], a["x_t"], t, o["clip_denoised"])
            sigma = np.exp(0.5 * lv["log_variance"]) * mask
        elif kind == "ddim_step":
            sigma = d.ddim_sigma(t, float(o["eta"]))[:, None] * mask + np.zeros(a["x_t"].shape)
        else:
            raise ValueError(
                f"unknown vector kind {kind!r}; the kinds are npddpm.conformance.vectors.KINDS"
            )
    sample = step + _noise_tols(a, sigma, dtype, k)
    if kind == "ddim_step" and pred is not step:
        # x̂₀ enters the DDIM update directly (√ᾱ_prev) and through ε̂ = (√(1/ᾱ)·x_t − x̂₀)/
        # √(1/ᾱ − 1) (times √(1 − ᾱ_prev − σ²) <= √(1 − ᾱ_prev)): its error, so weighted
        ch = _Chain(a["alphas_cumprod"])
        ab, abp = ch.ab[t], ch.ab_prev[t]
        w = np.sqrt(abp) + np.sqrt((1.0 - abp) * ab / np.maximum(1.0 - ab, 1e-300))
        sample = sample + w[:, None] * pred
    return {"sample": sample, "pred_xstart": pred}


def _xprev_xstart_tols(a: dict, dtype: str, k: float) -> np.ndarray:
    r"""x̂₀ of the ``x_prev`` parameterisation, x̂₀ = out/coef1 − (coef2/coef1)·x_t: the step
    bound of those two terms (coef1 → 0 at large t, amplifying the output's rounding by
    1/coef1 = (1 − ᾱ_t)/(β_t·√ᾱ_{t−1}), which :func:`step_tolerance` of x_t and the output
    alone does not hold)."""
    ch = _Chain(a["alphas_cumprod"])
    D = a["x_t"].shape[1]
    mo, x_t = a["model_output"][:, :D], a["x_t"]

    def row(i: int, t: int) -> np.ndarray:
        om = 1.0 - ch.ab[t]
        c1 = ch.beta[t] * np.sqrt(ch.ab_prev[t]) / om
        c2 = (1.0 - ch.ab_prev[t]) * np.sqrt(1.0 - ch.beta[t]) / om
        ab = float(ch.ab[t])
        return step_tolerance(ab, mo[i] / c1, (c2 / c1) * x_t[i], dtype=dtype, k=k)

    return _per_row(a["t"], row, x_t.shape)


def where_in_case(case: dict, a: dict, name: str, idx: tuple[int, ...]) -> str:
    """Where the largest ratio sits: the row's chain index t (or the table index)."""
    if not idx:
        return ""
    if case["kind"] == "schedule":
        return f"t={idx[0]}"
    if case["kind"] == "oracle_trajectory":
        return f"step {idx[0]}, row {idx[1]}" if len(idx) > 1 else f"step {idx[0]}"
    if "t" in a and case["kind"] != "spacing" and name != "prior_bpd":
        return f"t={int(a['t'][idx[0]])}"
    return f"index {idx}"


def compare_output(e: np.ndarray, g: np.ndarray, tol: np.ndarray) -> tuple[float, float, tuple]:
    """(max |g − e|, max |g − e|/tol, the index of that ratio); equal non-finite values
    agree, a non-finite value on one side only is an infinite ratio."""
    e = np.asarray(e, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), e.shape)
    same = (e == g) | (np.isnan(e) & np.isnan(g))
    with np.errstate(all="ignore"):
        err = np.where(same, 0.0, np.abs(g - e))
        err = np.where(np.isnan(err), np.inf, err)
        ratio = np.where(err == 0, 0.0, err / tol)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    if ratio.size == 0:
        return 0.0, 0.0, ()
    j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return float(np.max(err)), float(ratio[j]), tuple(int(v) for v in j)
