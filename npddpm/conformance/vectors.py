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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..diffusion import MEAN_TYPES, VAR_TYPES, GaussianDiffusion
from ..schedules import Schedule, diffusers_timesteps, space_timesteps

__all__ = ["KINDS", "VECTORS_VERSION", "compare_vectors", "export_vectors", "load_vectors"]

VECTORS_VERSION = 1
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


def load_vectors(directory: str | os.PathLike) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Read ``index.json`` and every case's arrays."""
    d = Path(directory)
    try:
        index = json.loads((d / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{d}: not a vectors directory (index.json unreadable: {exc})") from None
    if index.get("format") != "npddpm-vectors":
        raise ValueError(f"{d}/index.json: not an npddpm vectors index")
    if int(index.get("version", 0)) > VECTORS_VERSION:
        raise ValueError(f"{d}: vectors version {index['version']} is newer than this npddpm")
    data = {}
    for case in index["cases"]:
        with np.load(d / case["file"], allow_pickle=False) as z:
            data[case["file"]] = {k: z[k] for k in z.files}
    return index, data


def compare_vectors(
    expected_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> list[dict[str, Any]]:
    """Compare another implementation's ``results_dir`` with npddpm's ``expected_dir``.

    Returns one row per (case, output): ``file``, ``output``, ``max_abs``, ``verdict``
    ("ok", "FAIL" or "missing"). Tolerances default to float32-level agreement.
    """
    index, expected = load_vectors(expected_dir)
    _, got = load_vectors(results_dir)
    rows = []
    for case in index["cases"]:
        f = case["file"]
        for name in case["outputs"]:
            e = expected[f][name]
            g = got.get(f, {}).get(name)
            if g is None:
                rows.append(
                    {"file": f, "output": name, "max_abs": float("nan"), "verdict": "missing"}
                )
                continue
            if g.shape != e.shape:
                rows.append({"file": f, "output": name, "max_abs": float("inf"), "verdict": "FAIL"})
                continue
            err = np.abs(g.astype(np.float64) - e)
            ok = bool(np.all(err <= atol + rtol * np.abs(e)) or np.array_equal(g, e))
            rows.append(
                {
                    "file": f,
                    "output": name,
                    "max_abs": float(np.max(err, initial=0.0)),
                    "verdict": "ok" if ok else "FAIL",
                }
            )
    return rows
