r"""The verification suite behind ``npddpm verify``: npddpm's samplers against the analytic
oracle.

Two kinds of check, each a :class:`Row`:

``moments``
    Single-Gaussian data (full covariance, D = 3). For each schedule × respacing × sampler ×
    variance: the exact output mean/covariance from the moment recursion
    (:func:`npddpm.analytic.sampler_moments`), reported as its error against the data
    distribution (the sampler's discretisation error with the perfect denoiser, from
    x_T ~ N(0, I)); and, deterministically, the largest difference between the sampler's
    actual output and the affine recursion applied to the same x_T and noise (must be
    rounding, ≤ 1e-9). Rows with the exact reverse variance must also reproduce the data to
    rounding when started from q(x_T).
``chain``
    Gaussian-mixture data in 2-D and 16-D. The oracle-driven chain from N(0, I) is compared at
    several checkpoints with the exact q(x_t): one-sample Kolmogorov–Smirnov tests of random
    projections against the exact projected mixture CDF, and a χ² test of the sample mean
    against the exact mean and covariance. Each p-value is compared with α/m (Bonferroni over
    all m tests of the run), so the family-wise false-failure probability is :data:`ALPHA`.

Then the score-based samplers (:mod:`.score`) and the ODE/SDE solvers (:mod:`.solvers`:
identities, exact moments, the flow map and the measured orders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analytic import GaussianMixture, sampler_affine_steps, sampler_moments
from ..diffusion import GaussianDiffusion
from ..samplers import ddim, ddpm
from ..schedules import Schedule, space_timesteps
from .common import (
    ALPHA,
    DETERMINISTIC_TOL,
    Row,
    directions,
    gaussian_3d,
    gaussian_diag_3d,
    mean_chi2_pvalue,
    mixture_2d,
    mixture_16d,
    projection_ks_pvalues,
)
from .score import score_rows
from .solvers import solver_rows

__all__ = [
    "LEGEND",
    "chain_rows",
    "chain_states",
    "format_table",
    "moment_rows",
    "run_verification",
]


MOMENT_CASES = (
    ("ddpm", 0.0, "fixed_small", "model"),
    ("ddpm", 0.0, "fixed_large", "model"),
    ("ddpm", 0.0, "learned_range", "model"),
    ("ddpm", 0.0, "fixed_small", "exact"),
    ("ddim", 0.0, "fixed_small", "model"),
    ("ddim", 0.5, "fixed_small", "model"),
    ("ddim", 1.0, "fixed_small", "model"),
    ("ddim", 0.0, "fixed_small", "exact"),
)


def _sampler_label(sampler: str, eta: float, var_type: str, variance: str) -> tuple[str, str]:
    name = "ddpm" if sampler == "ddpm" else f"ddim η={eta:g}"
    var = "exact" if variance == "exact" else (var_type if sampler == "ddpm" else "σ(η)")
    return name, var


def _affine_reference(mixture, diffusion, sampler, eta, variance, x_T, noise):
    U, steps = sampler_affine_steps(mixture, diffusion, sampler=sampler, eta=eta, variance=variance)
    y = x_T if U is None else x_T @ U
    for t, A, B, v in steps:
        z = noise[t] if U is None else noise[t] @ U
        y = A * y + B + np.sqrt(v) * z
    return y if U is None else y @ U.T


SPACINGS = {"linear": ("1000", "100", "ddim10"), "cosine": ("250", "50", "ddim10")}


def moment_rows(
    spacings: dict[str, Sequence[str]] | None = None,
    batch: int = 32,
    *,
    pbar: Any = None,
) -> list[Row]:
    """The ``moments`` rows (see the module docstring); ``spacings`` maps schedule names (of
    1000 steps) to respacings (``"1000"``: none), default :data:`SPACINGS`. ``pbar``: a
    progress bar updated once per case (:func:`run_verification`)."""
    full, diag = gaussian_3d(), gaussian_diag_3d()
    rows = []
    for name, spacing_list in (spacings or SPACINGS).items():
        base = Schedule.from_name(name, 1000)
        for spacing in spacing_list:
            s = base if spacing == "1000" else base.respace(space_timesteps(1000, spacing))
            label = f"{name} {spacing}"
            for k, (sampler, eta, var_type, variance) in enumerate(MOMENT_CASES):
                data = diag if var_type.startswith("learned") else full
                d = GaussianDiffusion(s, var_type=var_type)
                if pbar is not None:
                    pbar.update(1)
                mom = sampler_moments(data, d, sampler=sampler, eta=eta, variance=variance)
                rng = np.random.default_rng(k)
                x_T = rng.standard_normal((batch, 3))
                noise = rng.standard_normal((s.num_timesteps, batch, 3))
                den = data.denoiser(d)
                if sampler == "ddpm":
                    out = ddpm(d, den, x_T, noise=noise, clip_denoised=False, variance=variance)
                else:
                    out = ddim(
                        d, den, x_T, eta=eta, noise=noise, clip_denoised=False, variance=variance
                    )
                ref = _affine_reference(data, d, sampler, eta, variance, x_T, noise)
                dev = float(np.max(np.abs(out - ref)))
                sname, vname = _sampler_label(sampler, eta, var_type, variance)
                note = f"vs data: |Δmean| {mom.mean_error:.1e}, |ΔΣ| {mom.covariance_error:.1e}"
                ok = dev <= DETERMINISTIC_TOL
                if variance == "exact":
                    exact = sampler_moments(
                        data, d, sampler=sampler, eta=eta, variance=variance, start="marginal"
                    )
                    err = max(exact.mean_error, exact.covariance_error)
                    note += f"; from q(x_T): {err:.1e}"
                    ok = ok and err <= DETERMINISTIC_TOL
                rows.append(
                    Row(
                        "moments",
                        "N(μ,Σ) 3-D" if data is full else "N(μ,diag) 3-D",
                        label,
                        sname,
                        vname,
                        "sampler−recursion",
                        dev,
                        DETERMINISTIC_TOL,
                        ok,
                        note,
                    )
                )
    return rows


def chain_rows(
    n: int = 2000,
    spacing: str = "250",
    checkpoints: tuple[float, ...] = (0.5, 0.2, 0.05, 0.0),
    n_directions: int = 6,
    alpha_per_test: float | None = None,
    samplers: tuple[tuple[str, float], ...] = (("ddpm", 0.0), ("ddim", 0.0)),
    seed: int = 0,
    datasets: dict[str, GaussianMixture] | None = None,
    *,
    pbar: Any = None,
    client: Any = None,
    shard_size: int | None = None,
) -> list[Row]:
    """The ``chain`` rows: per data set, sampler and checkpoint, the smallest p-value of the
    KS projections and the χ² mean test, against the Bonferroni limit α/m (m: all tests of
    the call; ``alpha_per_test`` overrides it).

    ``checkpoints`` are fractions of the number of steps: index ``round(f·(T−1))``; ``0.0``
    gives index 0's output, i.e. the data distribution itself (index −1). ``pbar``: a
    progress bar updated once per data set and sampler.

    ``client``: a :class:`dask.distributed.Client`; the n chains then run as shards of
    ``shard_size`` rows on its workers (:func:`npddpm.distributed.map_shards` over
    :func:`chain_states`), and the rows are bitwise those of the single-process call.
    """
    datasets = datasets or {"mixture 2-D": mixture_2d(), "mixture 16-D": mixture_16d()}
    s = Schedule.from_name("linear", 1000).respace(space_timesteps(1000, spacing))
    T = s.num_timesteps
    d = GaussianDiffusion(s)
    cps = [*sorted({round(f * (T - 1)) for f in checkpoints if f > 0}, reverse=True), -1]
    n_tests = len(datasets) * len(samplers) * len(cps) * (n_directions + 1)
    alpha = alpha_per_test if alpha_per_test is not None else ALPHA / n_tests
    rows = []
    for di, (dname, gm) in enumerate(datasets.items()):
        u = directions(gm.dim, n_directions, np.random.default_rng(100 + di))
        for sampler, eta in samplers:
            if pbar is not None:
                pbar.update(1)
            payload = (gm, d, sampler, eta, seed, tuple(cps))
            if client is None:
                states = chain_states(payload, 0, n)
            else:
                from ..distributed import concat, map_shards

                parts = map_shards(client, chain_states, n, payload=payload, shard_size=shard_size)
                states = concat(parts, axis=1)
            keep = dict(zip(cps, states, strict=True))
            sname = "ddpm" if sampler == "ddpm" else f"ddim η={eta:g}"
            for t in cps:
                target = gm if t == -1 else gm.marginal(s, t)
                p_ks = projection_ks_pvalues(keep[t], target, u)
                p_chi = mean_chi2_pvalue(keep[t], target)
                p = float(min(p_ks.min(), p_chi))
                where = "x₀ (data)" if t == -1 else f"t={int(s.timestep_map[t])}"
                rows.append(
                    Row(
                        "chain",
                        dname,
                        f"linear {spacing}",
                        sname,
                        "fixed_small" if sampler == "ddpm" else "σ(η)",
                        f"min p @ {where}",
                        p,
                        alpha,
                        p >= alpha,
                        f"{n_directions} KS + χ², n={n}",
                    )
                )
    return rows


def chain_states(payload: tuple, a: int, b: int) -> np.ndarray:
    """Rows ``[a, b)`` of the oracle-driven chains of :func:`chain_rows` at its checkpoints:
    shape ``(len(cps), b − a, D)``. ``payload = (mixture, diffusion, sampler, eta, seed,
    cps)``; row ``i`` is row ``i`` of the whole batch (``row_offset=a``), bitwise."""
    gm, d, sampler, eta, seed, cps = payload
    keep: dict[int, np.ndarray] = {}

    def grab(info: dict[str, Any]) -> None:
        if info["t"] - 1 in cps:
            keep[info["t"] - 1] = info["x"].copy()

    den = gm.denoiser(d)
    shape = (b - a, gm.dim)
    if sampler == "ddpm":
        ddpm(d, den, shape, seed=seed, clip_denoised=False, callback=grab, row_offset=a)
    else:
        ddim(d, den, shape, eta=eta, seed=seed, clip_denoised=False, callback=grab, row_offset=a)
    return np.stack([keep[t] for t in cps])


def run_verification(
    *,
    quick: bool = False,
    progress: bool | None = False,
    client: Any = None,
    shard_size: int | None = None,
    chains: int | None = None,
) -> list[Row]:
    """Run the whole suite and return its rows (``quick``: fewer cases, for tests).

    ``progress``: a tqdm bar on stderr counting the cases as they start (True; None: only
    when stderr is a terminal, :mod:`npddpm._progress`); the rows do not depend on it.
    ``client``: a :class:`dask.distributed.Client` for the Monte-Carlo (``chain``) rows,
    sharded by ``shard_size`` rows (:func:`chain_rows`); the rows are the same bitwise.
    ``chains``: chains per Monte-Carlo row (default 2000; 500 with ``quick``)."""
    from .._progress import bar

    mc = {"client": client, "shard_size": shard_size}
    if chains is not None:
        mc["n"] = chains
    with bar(None, "verify", progress, unit="case") as pbar:
        if quick:
            mc.setdefault("n", 500)
            rows = moment_rows({"linear": ("ddim10",)}, pbar=pbar) + chain_rows(
                spacing="50", checkpoints=(0.5, 0.0), samplers=(("ddpm", 0.0),), pbar=pbar, **mc
            )
        else:
            rows = moment_rows(pbar=pbar) + chain_rows(pbar=pbar, **mc)
        pbar.set_postfix_str("score-based samplers")
        pbar.update(1)
        rows = rows + score_rows(quick=quick)
        pbar.set_postfix_str("ODE/SDE solvers")
        pbar.update(1)
        return rows + solver_rows(quick=quick)


LEGEND = (
    "moments: value = max |sampler − affine recursion| with identical noise (the note gives "
    "the recursion's error against the data); chain: smallest p-value of the row's tests, "
    f"limit α/m (Bonferroni over all m tests, family-wise α = {ALPHA:g}); identity/solver "
    "moments: max difference from DDIM/DDPM; order: |measured − theoretical order| against "
    "the exact flow map"
)


def format_table(rows: list[Row], seconds: float | None = None) -> str:
    """A plain-text table of ``rows``, then a summary line."""
    head = (
        "check",
        "data",
        "schedule",
        "sampler",
        "variance",
        "metric",
        "value",
        "limit",
        "ok",
        "note",
    )
    body = [
        (
            r.check,
            r.data,
            r.schedule,
            r.sampler,
            r.variance,
            r.metric,
            f"{r.value:.2e}",
            f"{r.limit:.1e}",
            "ok" if r.passed else "FAIL",
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(b).rstrip() for b in body]
    failed = sum(not r.passed for r in rows)
    summary = f"{len(rows)} checks, {failed} failed"
    if seconds is not None:
        summary += f", {seconds:.1f} s"
    out.append(summary)
    return "\n".join(out)
