r"""Versioned test vectors: npddpm's answers on fixed inputs, for implementations in any
language.

Format (``VECTORS_VERSION`` 1)
------------------------------
A directory with ``index.json`` and one ``.npz`` file per case. ``.npz`` is a ZIP archive of
``.npy`` files (the NumPy array format: a short header giving dtype, shape and order, then
the raw little-endian data), readable without Python. ``index.json``::

    {"format": "npddpm-vectors", "version": 1, "npddpm": "<version>",
     "conventions": {...},                       # index convention, dtypes, shapes
     "cases": [{"file": "ddpm_step_linear_eps_fixed_small_clip.npz",
                "kind": "ddpm_step",              # see KINDS
                "options": {...},                 # schedule, T, mean/var type, clip, eta, …
                "inputs": ["x_t", "model_output", "t", "noise", "alphas_cumprod"],
                "outputs": ["sample", "pred_xstart"]}, …]}

Every array is float64 (integers: int64); ``t`` holds per-row indices into the (respaced)
chain and ``timestep_map`` the original timesteps. Another implementation reads ``inputs``,
computes ``outputs`` under the stated ``options`` and writes them into a directory of the same
layout; ``npddpm conform --vectors DIR`` then compares (:func:`compare_vectors`).

Results
-------
The results directory has the same layout: an ``index.json`` of the same ``format`` and
``version`` and one ``.npz`` per case holding (at least) that case's ``outputs``, in any
float dtype. Its index may add::

    "dtype": "float32",       # the precision the outputs were computed in: "float64"
                              # (the default when absent), "float32", "float16", "bfloat16"

and its ``cases`` may list a subset of the exported cases (each entry needs only ``file``):
the cases it lists are *declared* — each of their outputs is compared, and one whose file or
array is absent is "missing" (a failure) — while exported cases it does not list are "not
declared" (reported, not failures). Tolerances are scaled by each quantity's conditioning at
the declared precision (:mod:`npddpm.conformance.tolerances`; each kind's bound is
justified where it is computed, below): integers (spacing) must be equal.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..diffusion import MEAN_TYPES, VAR_TYPES, GaussianDiffusion
from ..schedules import Schedule, diffusers_timesteps, space_timesteps
from .tolerances import default_k, noise_tolerance
from .vector_tolerances import case_tolerances, compare_output, where_in_case

__all__ = [
    "DTYPES",
    "KINDS",
    "VECTORS_VERSION",
    "compare_vectors",
    "export_vectors",
    "load_vectors",
]

VECTORS_VERSION = 1
DTYPES = ("float64", "float32", "float16", "bfloat16")  # a results' declared precision
KINDS = (
    "schedule",
    "spacing",
    "q_sample",
    "q_posterior",
    "p_mean_variance",
    "ddpm_step",
    "ddim_step",
    "losses",
    "oracle",
    "oracle_trajectory",
)

_SCHEDULE_ARRAYS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "alphas_cumprod_next",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def _edge_t(T: int) -> np.ndarray:
    return np.array(sorted({0, 1, 2, T // 2, T - 2, T - 1} & set(range(T))), dtype=np.int64)


def _inputs(rng, B, D, learned):
    x0 = rng.uniform(-1, 1, (B, D))
    noise = rng.standard_normal((B, D))
    mean = rng.standard_normal((B, D))
    mean[::2] *= 3.0  # x̂₀ leaves [−1, 1] on these rows: clipping triggers
    mo = np.concatenate([mean, rng.uniform(-1, 1, (B, D))], axis=1) if learned else mean
    return x0, noise, mo


def export_vectors(directory: str | os.PathLike, *, seed: int = 0, dim: int = 3) -> Path:
    """Write the vector set into ``directory`` (created) and return the index path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cases: list[dict[str, Any]] = []

    def write(name, kind, options, inputs, outputs):
        arrays = {**inputs, **outputs}
        np.savez(out / f"{name}.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        cases.append(
            {
                "file": f"{name}.npz",
                "kind": kind,
                "options": options,
                "inputs": sorted(inputs),
                "outputs": sorted(outputs),
            }
        )

    # schedule tables
    for sched, T in (
        ("linear", 1000),
        ("cosine", 1000),
        ("linear", 4000),
        ("cosine", 4000),
        ("cosine", 7),
        ("linear_unscaled", 999),
    ):
        for precision in ("default", "high"):
            s = Schedule.from_name(sched, T, precision=precision)
            write(
                f"schedule_{sched}_{T}_{precision}",
                "schedule",
                {"schedule": sched, "T": T, "precision": precision},
                {},
                {k: getattr(s, k) for k in _SCHEDULE_ARRAYS},
            )
    # spacing tables
    for T in (1000, 4000):
        outs: dict[str, np.ndarray] = {}
        for N in (1, 2, 3, 10, 21, 50, 61, 100, 103, 250, T - 1, T):
            outs[f"improved_diffusion_{N}"] = np.array(sorted(space_timesteps(T, str(N))))
            for sp in ("leading", "trailing", "linspace"):
                for off in (0, 1):
                    outs[f"diffusers_{sp}_offset{off}_{N}"] = diffusers_timesteps(T, N, sp, off)
        write(f"spacing_{T}", "spacing", {"T": T}, {}, outs)
    # steps, for two schedules, a full and a respaced chain
    for sched, T, chain in (
        ("linear", 1000, None),
        ("cosine", 1000, None),
        ("cosine", 1000, "ddim50"),
    ):
        base = Schedule.from_name(sched, T)
        s = base if chain is None else base.respace(space_timesteps(T, chain))
        t = _edge_t(s.num_timesteps)
        B = t.size
        tag = f"{sched}{'' if chain is None else '_' + chain}"
        common = {"alphas_cumprod": s.alphas_cumprod, "timestep_map": s.timestep_map, "t": t}
        d = GaussianDiffusion(s)
        x0, noise, _ = _inputs(rng, B, dim, False)
        write(
            f"q_sample_{tag}",
            "q_sample",
            {"schedule": sched, "T": T, "respacing": chain},
            {**common, "x0": x0, "noise": noise},
            {"x_t": d.q_sample(x0, t, noise)},
        )
        x_t = d.q_sample(x0, t, noise)
        m, v, lv = d.q_posterior_mean_variance(x0, x_t, t)
        write(
            f"q_posterior_{tag}",
            "q_posterior",
            {"schedule": sched, "T": T, "respacing": chain},
            {**common, "x0": x0, "x_t": x_t},
            {"mean": m, "variance": v, "log_variance": lv},
        )
        for mt in MEAN_TYPES:
            for vt in VAR_TYPES:
                learned = vt.startswith("learned")
                d = GaussianDiffusion(s, mean_type=mt, var_type=vt)
                x0, noise, mo = _inputs(rng, B, dim, learned)
                x_t = d.q_sample(x0, t, noise)
                opts = {
                    "schedule": sched,
                    "T": T,
                    "respacing": chain,
                    "mean_type": mt,
                    "var_type": vt,
                    "profile": "improved_diffusion",
                }
                for clip in (True, False):
                    o = {**opts, "clip_denoised": clip}
                    pmv = d.p_mean_variance(mo, x_t, t, clip_denoised=clip)
                    ins = {**common, "x_t": x_t, "model_output": mo}
                    c = "clip" if clip else "noclip"
                    write(f"pmv_{tag}_{mt}_{vt}_{c}", "p_mean_variance", o, ins, pmv)
                    z = rng.standard_normal(x_t.shape)
                    smp = d.p_sample(mo, x_t, t, z, clip_denoised=clip)
                    write(
                        f"ddpm_step_{tag}_{mt}_{vt}_{c}", "ddpm_step", o, {**ins, "noise": z}, smp
                    )
                    if vt == "fixed_small":
                        for eta in (0.0, 0.5, 1.0):
                            smp = d.ddim_sample(mo, x_t, t, eta, z, clip_denoised=clip)
                            write(
                                f"ddim_step_{tag}_{mt}_eta{eta:g}_{c}",
                                "ddim_step",
                                {**o, "eta": eta},
                                {**ins, "noise": z},
                                smp,
                            )
                if chain is None and sched == "linear":
                    for lt in ("mse", "rescaled_mse", "kl", "rescaled_kl"):
                        dl = GaussianDiffusion(s, mean_type=mt, var_type=vt, loss_type=lt)
                        terms, grad = dl.training_losses(mo, x0, t, noise)
                        write(
                            f"losses_{tag}_{mt}_{vt}_{lt}",
                            "losses",
                            {**opts, "loss_type": lt},
                            {**common, "x0": x0, "noise": noise, "model_output": mo},
                            {
                                **{f"terms_{k}": v for k, v in terms.items()},
                                "grad": grad,
                                "prior_bpd": dl.prior_bpd(x0),
                            },
                        )
    # the exact denoiser for Gaussian-mixture data, and a deterministic DDIM trajectory
    from ..analytic import GaussianMixture
    from ..samplers import ddim

    gm = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [0.8, -0.2]], [0.05, 0.1])
    mix = {"weights": gm.weights, "means": gm.means, "variances": np.array([0.05, 0.1])}
    for sched in ("linear", "cosine"):
        s = Schedule.from_name(sched, 1000)
        t = _edge_t(1000)
        x_t = rng.standard_normal((t.size, 2))
        write(
            f"oracle_{sched}",
            "oracle",
            {"schedule": sched, "T": 1000, "data": "isotropic Gaussian mixture"},
            {**mix, "alphas_cumprod": s.alphas_cumprod, "t": t, "x_t": x_t},
            {
                "eps": gm.eps(x_t, s, t),
                "x0_mean": gm.x0_mean(x_t, s, t),
                "score": gm.score(x_t, s, t),
            },
        )
        r = s.respace(space_timesteps(1000, "ddim25"))
        d = GaussianDiffusion(r)
        x_T = rng.standard_normal((8, 2))
        _, traj = ddim(d, gm.denoiser(d), x_T, eta=0.0, clip_denoised=False, return_trajectory=True)
        write(
            f"oracle_trajectory_{sched}_ddim25",
            "oracle_trajectory",
            {
                "schedule": sched,
                "T": 1000,
                "respacing": "ddim25",
                "sampler": "ddim",
                "eta": 0.0,
                "clip_denoised": False,
                "note": "trajectory[i] is the state at chain index 24 - i; [0] = x_T",
            },
            {**mix, "alphas_cumprod": r.alphas_cumprod, "timestep_map": r.timestep_map, "x_T": x_T},
            {"trajectory": traj},
        )
    index = {
        "format": "npddpm-vectors",
        "version": VECTORS_VERSION,
        "npddpm": __version__,
        "seed": seed,
        "conventions": {
            "t": "per-row index into the (respaced) chain; 0 = diffused once",
            "timestep_map": "original timestep of each chain index",
            "dtype": "float64 (int64 for t and tables)",
            "model_output": "(B, D), or (B, 2D) for learned variances",
        },
        "cases": cases,
    }
    path = out / "index.json"
    path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return path


def _read_index(directory: str | os.PathLike, role: str) -> dict:
    """``directory/index.json``, checked to be an npddpm vectors index of this version."""
    d = Path(directory)
    path = d / "index.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{d}: not a vectors directory (index.json unreadable: {exc})") from None
    fix = (
        "export the vectors afresh with this npddpm (`npddpm vectors export DIR`)"
        if role == "expected"
        else "write the results with the index.json of the vectors they were computed from "
        f"(format 'npddpm-vectors', version {VECTORS_VERSION})"
    )
    if not isinstance(index, dict) or index.get("format") != "npddpm-vectors":
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ValueError(
            f"{path}: not an npddpm vectors index (format {found!r}, expected "
            f"'npddpm-vectors'); {fix}"
        )
    version = index.get("version")
    if type(version) is not int or version != VECTORS_VERSION:
        raise ValueError(
            f"{path}: vectors version {version!r}, but this npddpm reads version "
            f"{VECTORS_VERSION} only; {fix}"
        )
    return index


def load_vectors(directory: str | os.PathLike) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Read ``index.json`` (a ValueError unless it is a version-``VECTORS_VERSION`` index)
    and every case's arrays."""
    d = Path(directory)
    index = _read_index(d, "expected")
    return index, _load_cases(d, index["cases"])


def _load_cases(d: Path, cases: list[dict], only: set[str] | None = None) -> dict:
    data = {}
    for case in cases:
        if only is None or case["file"] in only:
            with np.load(d / case["file"], allow_pickle=False) as z:
                data[case["file"]] = {k: z[k] for k in z.files}
    return data


def _load_results(
    directory: str | os.PathLike, only: set[str]
) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """The results' declared dtype and the arrays of every case their index lists (of those
    in ``only``); a listed case whose file is absent maps to ``{}`` (its outputs are then
    "missing"); a case not listed is absent from the mapping ("not declared")."""
    d = Path(directory)
    index = _read_index(d, "results")
    dtype = index.get("dtype", "float64")
    if dtype not in DTYPES:
        raise ValueError(
            f"{d / 'index.json'}: dtype {dtype!r} is not one of {', '.join(DTYPES)}; declare "
            "the precision the results were computed in (omit it for float64)"
        )
    cases = index.get("cases")
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "file" in c for c in cases):
        raise ValueError(
            f"{d / 'index.json'}: no list of 'cases' (each with a 'file'); list the cases "
            "the results hold, as in the exported index.json"
        )
    data: dict[str, dict[str, np.ndarray]] = {}
    for case in cases:
        f = d / case["file"]
        if case["file"] not in only:
            continue
        if not f.exists():
            data[case["file"]] = {}
            continue
        with np.load(f, allow_pickle=False) as z:
            data[case["file"]] = {k: z[k] for k in z.files}
    return dtype, data


def _selected(case: dict, patterns: Sequence[str] | None) -> bool:
    if not patterns:
        return True
    name = case["file"]
    stem = name[:-4] if name.endswith(".npz") else name
    return any(
        fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(stem, p) or p == case.get("kind")
        for p in patterns
    )


def compare_vectors(
    expected_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    *,
    cases: Sequence[str] | None = None,
    k: float | None = None,
) -> list[dict[str, Any]]:
    """Compare another implementation's ``results_dir`` with npddpm's ``expected_dir``.

    Tolerances are conditioning-scaled (:mod:`npddpm.conformance.tolerances`) at the
    precision the results' ``index.json`` declares (``"dtype"``, default float64).

    Parameters
    ----------
    cases : sequence of str, optional
        fnmatch patterns on case file names (with or without ``.npz``) or kind names; only
        matching cases are compared (a ValueError when a pattern matches none).
    k : float, optional
        Safety multiplier (default :func:`~npddpm.conformance.tolerances.default_k`).

    Returns
    -------
    list of dict
        One row per (case, output): ``file``, ``kind``, ``output``, ``verdict`` ("ok",
        "FAIL", "missing": declared by the results but absent, "not declared": a case the
        results' index does not list), ``max_abs`` (max |result − expected|), ``ratio``
        (max error/tolerance; inf for a shape mismatch or a non-finite value on one side
        only, nan when not compared), ``where`` (the t or index of that ratio), ``dtype``.
    """
    index = _read_index(expected_dir, "expected")
    chosen = [c for c in index["cases"] if _selected(c, cases)]
    dtype, got = _load_results(results_dir, {c["file"] for c in chosen})
    expected = _load_cases(Path(expected_dir), chosen, only=set(got))  # the declared ones
    k = default_k(dtype) if k is None else float(k)
    if cases:
        for p in cases:
            if not any(_selected(c, [p]) for c in index["cases"]):
                raise ValueError(
                    f"--cases pattern {p!r} matches no case; patterns match case files "
                    f"(e.g. 'ddpm_step_*') or kinds ({', '.join(KINDS)})"
                )
    rows: list[dict[str, Any]] = []
    for case in chosen:
        f = case["file"]
        if "kind" not in case or "outputs" not in case:
            raise ValueError(f"{Path(expected_dir) / 'index.json'}: case {f} has no kind/outputs")
        base = {"file": f, "kind": case["kind"], "dtype": dtype}
        if f not in got:
            for name in case["outputs"]:
                rows.append(_row(base, name, "not declared"))
            continue
        e_all = expected[f]
        g_all = got[f]
        e_out = {n: e_all[n] for n in case["outputs"]}
        tols: dict[str, np.ndarray] | None = None
        for name in case["outputs"]:
            if name not in g_all:
                rows.append(_row(base, name, "missing"))
                continue
            e, g = e_all[name], np.asarray(g_all[name])
            if g.shape != e.shape:
                rows.append(
                    _row(base, name, "FAIL", np.inf, np.inf, f"shape {g.shape}, not {e.shape}")
                )
                continue
            if tols is None:
                tols = case_tolerances(case, e_all, e_out, dtype, k)
            err, ratio, j = compare_output(e, g, tols[name])
            verdict = "ok" if ratio <= 1.0 else "FAIL"
            rows.append(_row(base, name, verdict, err, ratio, where_in_case(case, e_all, name, j)))
    rows += _noise_rows(chosen, expected, got, dtype, k)
    return rows


def _noise_rows(chosen: list[dict], expected: dict, got: dict, dtype: str, k: float) -> list:
    """The noise term of each DDPM step, ``sample − mean`` of a ``ddpm_step`` case and its
    ``p_mean_variance`` twin (same inputs), against σ_t·z at the noise term's own scale
    (:func:`~npddpm.conformance.tolerances.noise_tolerance`). A single output cannot show
    noise where none belongs: at t = 0, √β̃₁·z ≈ 0.0074·z is far below the float32
    tolerance of the step's mean there, but the difference of the two outputs has no mean
    left to hide it."""
    rows = []
    files = {c["file"]: c for c in chosen}
    for f, case in files.items():
        twin = "pmv_" + f[len("ddpm_step_") :] if f.startswith("ddpm_step_") else None
        if case.get("kind") != "ddpm_step" or twin not in files or f not in got:
            continue
        if twin not in got or "sample" not in got[f] or "mean" not in got[twin]:
            continue
        e, a = expected[f], expected[f]
        xa, xb = np.asarray(got[f]["sample"]), np.asarray(got[twin]["mean"])
        if xa.shape != e["sample"].shape or xb.shape != xa.shape:
            continue
        exp = e["sample"] - expected[twin]["mean"]
        ab_tab, t, z = a["alphas_cumprod"], np.asarray(a["t"]), a["noise"]
        tol = np.empty_like(exp)
        for r in range(len(t)):
            ab = float(ab_tab[t[r]])
            abp = float(ab_tab[t[r] - 1]) if t[r] > 0 else 1.0
            zr = z[r].reshape(-1)
            sigma = float(np.linalg.norm(exp[r])) / max(float(np.linalg.norm(zr)), 1e-300)
            tol[r] = noise_tolerance(
                ab, abp, sigma, z[r], np.zeros_like(z[r]), xa[r], xb[r], dtype=dtype, k=k
            )
        err, ratio, j = compare_output(exp, xa - xb, tol)
        base = {"file": f, "kind": "ddpm_step", "dtype": dtype}
        where = where_in_case(case, a, "sample", j)
        rows.append(_row(base, "noise_term", "ok" if ratio <= 1 else "FAIL", err, ratio, where))
    return rows


def _row(
    base: dict, output: str, verdict: str, err: float = np.nan, ratio: float = np.nan, where=""
) -> dict[str, Any]:
    return {**base, "output": output, "verdict": verdict, "max_abs": err, "ratio": ratio,
            "where": where}  # fmt: skip
