"""What the samplers share: argument set-up, the per-step noise, the fused-kernel gate, the
reverse loop and the exact-variance noise. Private to :mod:`npddpm.samplers`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import rng
from .._checks import check_batch, choose
from ..diffusion import GaussianDiffusion
from ..kernels import BACKENDS

__all__ = [
    "check_kernel_path",
    "check_row_offset",
    "exact_noise",
    "initial_state",
    "kernel_log_variance",
    "run_loop",
    "setup",
    "sharded",
    "step_noise",
]

Array = np.ndarray


def step_noise(
    seed: int, step: int, shape: tuple[int, ...], dtype: np.dtype, row_offset: int = 0
) -> Array:
    """Standard normal noise for ``step`` under ``seed``: a pure function of (seed, step).

    The single place where samplers draw random numbers: the counter-based generator
    (:func:`npddpm.rng.standard_normal`, Philox4x32-10, stream = step) that the ``cpu`` and
    ``cuda`` kernels evaluate in-kernel, so every backend uses the same noise.

    ``row_offset``: the global index of the first row. Row ``b`` gets the noise of row
    ``row_offset + b`` of a larger batch (flat element index ``(row_offset + b)·D + j``), so
    ``step_noise(s, k, (n, D), dt)[a:b] == step_noise(s, k, (b − a, D), dt, row_offset=a)``
    bitwise: the global row index keys the noise (what sharded runs rely on).
    """
    dt = np.dtype(dtype)
    gen_dtype = dt if dt in (np.dtype(np.float32), np.dtype(np.float64)) else np.float64
    start = int(row_offset) * int(np.prod(shape[1:], dtype=np.int64))
    return rng.standard_normal(int(seed), int(step), shape, gen_dtype, start=start).astype(
        dt, copy=False
    )


def check_row_offset(row_offset: object) -> int:
    """``row_offset`` as an int, or a ValueError/TypeError naming it."""
    if isinstance(row_offset, bool) or not isinstance(row_offset, (int, np.integer)):
        raise TypeError(f"row_offset must be a non-negative int, got {row_offset!r:.60}")
    if row_offset < 0:
        raise ValueError(
            f"row_offset must be ≥ 0 (the global index of the batch's first row), got {row_offset}"
        )
    return int(row_offset)


def sharded(sampler: Any, arguments: dict[str, Any]) -> Any:
    """Run ``sampler`` (a public sampler, called with ``arguments``: its own keyword values,
    ``client`` set) on a Dask cluster: :func:`npddpm.distributed.sample`."""
    from ..distributed import sample

    return sample(sampler, arguments)


def kernel_log_variance(diffusion: GaussianDiffusion) -> Array | None:
    """The per-timestep log σ² the fused kernels use, or None if the kernels cannot run this
    diffusion (they implement ε-models with fixed variances, improved-diffusion semantics)."""
    p = diffusion.profile
    if (
        diffusion.mean_type != "eps"
        or diffusion.var_type not in ("fixed_small", "fixed_large")
        or p.last_step_noise != "index"
        or p.xstart_from_eps != "recip"
        or not p.ddim_rederive_eps
    ):
        return None
    tables = diffusion.tables
    return tables.small_logvar if diffusion.var_type == "fixed_small" else tables.large_logvar


def check_kernel_path(diffusion, backend, variance, denoised_fn) -> Array | None:
    if backend == "numpy":
        return None
    lv = kernel_log_variance(diffusion)
    if lv is None or variance != "model" or denoised_fn is not None:
        raise ValueError(
            f"backend={backend!r} runs the fused kernels, which implement ε-prediction with "
            "fixed_small/fixed_large variances, variance='model' and no denoised_fn "
            f"(got mean_type={diffusion.mean_type!r}, var_type={diffusion.var_type!r}, "
            f"variance={variance!r}); use backend='numpy' for this configuration"
        )
    return lv


def initial_state(diffusion, denoiser, x_T_or_shape, seed, row_offset=0) -> Array:
    """Check the arguments every diffusion sampler shares and return x_T.

    ``x_T_or_shape`` is an array x_T (copied) or a shape, in which case x_T ~ N(0, I) is
    :func:`step_noise` ``(seed, 0, shape, float64)``.
    """
    if not isinstance(diffusion, GaussianDiffusion):
        raise TypeError(
            f"diffusion must be an npddpm.GaussianDiffusion, got {type(diffusion).__name__}"
        )
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x_t, t) -> model_output")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(x_T_or_shape, np.ndarray):
        return check_batch(x_T_or_shape, "x_T").copy()
    try:
        shape = tuple(x_T_or_shape)
    except TypeError:
        shape = None
    if shape is None or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape
    ):
        raise TypeError(
            "x_T_or_shape must be a NumPy array x_T or a shape tuple of ints such as "
            f"(B, D), got {x_T_or_shape!r:.60}"
        )
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, ...) with positive sizes, got {shape}")
    return step_noise(int(seed), 0, shape, np.dtype(np.float64), check_row_offset(row_offset))


def setup(diffusion, denoiser, x_T_or_shape, seed, noise, backend, variance, row_offset=0):
    x = initial_state(diffusion, denoiser, x_T_or_shape, seed, row_offset)
    if backend not in BACKENDS:
        raise ValueError(
            f"backend {backend!r} is not available; available backends: {', '.join(BACKENDS)}"
        )
    variance = choose(variance, "variance", ("model", "exact"))
    if variance == "exact" and not callable(getattr(denoiser, "x0_covariance", None)):
        raise ValueError(
            "variance='exact' needs a denoiser with an x0_covariance(x_t, t) method, such as "
            "GaussianMixture.denoiser(diffusion); use variance='model' for other denoisers"
        )
    if diffusion.mean_type == "eps" and diffusion.schedule.alphas_cumprod[-1] == 0.0:
        raise ValueError(
            "this schedule has zero terminal SNR (ᾱ_{T−1} = 0), where an ε-prediction model "
            "cannot give x̂₀ (x̂₀ = (x_t − √(1−ᾱ)·ε)/√ᾱ divides by zero and the samples are "
            "NaN); use a v- or x₀-prediction model (mean_type='v' or 'x0'), or a schedule "
            "with ᾱ_{T−1} > 0"
        )
    T = diffusion.num_timesteps
    if noise is not None:
        noise = np.asarray(noise)
        if noise.shape != (T, *x.shape):
            raise ValueError(
                f"noise must have shape (T, *x_T.shape) = {(T, *x.shape)} (noise[t] is used "
                f"by the step from index t), got {noise.shape}"
            )
    return x, noise, variance


def exact_noise(denoiser, x, tb, orig, P, S, z):
    """``sqrtm(S·I + P²·Cov[x₀|x_t]) @ z`` per row (symmetric square root, via eigh)."""
    B = x.shape[0]
    cov = denoiser.x0_covariance(x, orig)
    D = cov.shape[-1]
    if cov.shape != (B, D, D) or D != int(np.prod(x.shape[1:])):
        raise ValueError(
            f"denoiser.x0_covariance returned shape {cov.shape}, expected {(B, D, D)} with "
            f"D = {int(np.prod(x.shape[1:]))} values per row"
        )
    full = P[:, None, None] ** 2 * cov + S[:, None, None] * np.eye(D)
    w, V = np.linalg.eigh(full)
    root = np.einsum("bij,bj,bkj->bik", V, np.sqrt(np.maximum(w, 0.0)), V)
    zf = z.reshape(B, D).astype(np.float64)
    return np.einsum("bij,bj->bi", root, zf).reshape(x.shape)


def run_loop(
    name,
    diffusion,
    denoiser,
    x,
    seed,
    noise,
    step_fn,
    progress,
    callback,
    traj,
    in_kernel=False,
    row_offset=0,
):
    """The reverse loop every sampler shares: ``x`` from step ``T`` to 0 through ``step_fn``;
    ``progress`` (True, False, or None: auto, when stderr is a terminal) shows a tqdm bar
    named ``name`` (:mod:`npddpm._progress`; it only counts, the result is the same).
    ``row_offset`` keys the noise (:func:`step_noise`); the fused kernels draw in-kernel
    noise only for a batch that starts at row 0, so ``in_kernel`` is dropped otherwise."""
    from .._progress import bar

    T = diffusion.num_timesteps
    out_traj = [x.copy()] if traj else None
    pbar = bar(T, name, progress)
    in_kernel = in_kernel and row_offset == 0
    try:
        return _run_steps(
            diffusion, denoiser, x, seed, noise, step_fn, callback, traj, in_kernel, out_traj,
            pbar, row_offset,
        )
    finally:
        pbar.close()


def _run_steps(
    diffusion, denoiser, x, seed, noise, step_fn, callback, traj, in_kernel, out_traj, pbar,
    row_offset,
):
    T = diffusion.num_timesteps
    for i, t in enumerate(range(T - 1, -1, -1), start=1):
        tb = np.full(x.shape[0], t, dtype=np.int64)
        if noise is not None:
            z = noise[t].astype(x.dtype, copy=False)
        elif in_kernel:
            z = None  # drawn inside the kernel from (seed, stream = i)
        else:
            z = step_noise(seed, i, x.shape, x.dtype, row_offset)
        orig = diffusion.model_timesteps(tb)
        model_output = np.asarray(denoiser(x, orig))
        if in_kernel and model_output.dtype != x.dtype:
            model_output = model_output.astype(x.dtype)
        x, pred_xstart = step_fn(model_output, x, tb, orig, z, i)
        if callback is not None:
            callback(
                {"i": i - 1, "t": t, "timestep": int(orig[0]), "x": x, "pred_xstart": pred_xstart}
            )
        if traj:
            out_traj.append(x.copy())
        pbar.update(1)
    if traj:
        return x, np.stack(out_traj)
    return x
