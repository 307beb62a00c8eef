r"""Ancestral samplers: DDPM (Ho et al. 2020, Algorithm 2) and DDIM (Song et al. 2021, Eq. 12).

Both are called as described in :mod:`npddpm.samplers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np

from .. import kernels
from ..diffusion import GaussianDiffusion
from ..typing import BackendName, DenoisedFn, Denoiser
from ._common import check_kernel_path, exact_noise, run_loop, setup, sharded

__all__ = ["ddim", "ddpm"]

Array = np.ndarray


@overload
def ddpm(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    seed: int = ...,
    row_offset: int = ...,
    client: Any = ...,
    shard_size: int | None = ...,
    noise: Array | None = ...,
    backend: BackendName | str = ...,
    clip_denoised: bool = ...,
    denoised_fn: DenoisedFn | None = ...,
    variance: str = ...,
    progress: bool | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[False] = ...,
) -> Array: ...
@overload
def ddpm(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    seed: int = ...,
    row_offset: int = ...,
    client: Any = ...,
    shard_size: int | None = ...,
    noise: Array | None = ...,
    backend: BackendName | str = ...,
    clip_denoised: bool = ...,
    denoised_fn: DenoisedFn | None = ...,
    variance: str = ...,
    progress: bool | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[True],
) -> tuple[Array, Array]: ...
@overload
def ddpm(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    seed: int = ...,
    row_offset: int = ...,
    client: Any = ...,
    shard_size: int | None = ...,
    noise: Array | None = ...,
    backend: BackendName | str = ...,
    clip_denoised: bool = ...,
    denoised_fn: DenoisedFn | None = ...,
    variance: str = ...,
    progress: bool | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: bool,
) -> Array | tuple[Array, Array]: ...


def ddpm(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    noise: Array | None = None,
    backend: BackendName | str = "numpy",
    clip_denoised: bool = True,
    denoised_fn: DenoisedFn | None = None,
    variance: str = "model",
    progress: bool | None = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_trajectory: bool = False,
) -> Array | tuple[Array, Array]:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2); see the module docstring.

    Returns x₀ (x_T's shape and dtype), or ``(x₀, trajectory)`` of shape ``(T + 1, *shape)``
    with ``trajectory[i]`` the state at index ``T − 1 − i`` (``trajectory[0] = x_T``,
    ``trajectory[T] = x₀``). ``callback(info)`` is called after every step with ``i`` (step
    number from 0), ``t`` (the index just processed), ``timestep`` (its original timestep),
    ``x`` (the new state, at index t − 1) and ``pred_xstart``.
    """
    if client is not None:
        return sharded(ddpm, dict(locals()))
    x, noise, variance = setup(
        diffusion, denoiser, x_T_or_shape, seed, noise, backend, variance, row_offset
    )
    s = diffusion.schedule
    kernel_lv = check_kernel_path(diffusion, backend, variance, denoised_fn)

    def step(model_output, x_t, tb, orig, z, i):
        if kernel_lv is not None:
            x_prev = kernels.ddpm_step(
                s,
                np.ascontiguousarray(x_t),
                tb,
                model_output,
                kernel_lv,
                z,
                clip_denoised=clip_denoised,
                seed=None if z is not None else seed,
                stream=i,
                backend=backend,
            )
            return np.asarray(x_prev), None
        if variance == "model":
            out = diffusion.p_sample(
                model_output, x_t, tb, z, clip_denoised=clip_denoised, denoised_fn=denoised_fn
            )
            return out["sample"], out["pred_xstart"]
        pm = diffusion.p_mean_variance(
            model_output, x_t, tb, clip_denoised=clip_denoised, denoised_fn=denoised_fn
        )
        P, S = s.posterior_mean_coef1[tb], s.posterior_variance[tb]
        extra = exact_noise(denoiser, x_t, tb, orig, P, S, z)
        sample = pm["mean"].astype(np.float64) + extra
        return sample.astype(x_t.dtype), pm["pred_xstart"]

    return run_loop(
        "ddpm",
        diffusion,
        denoiser,
        x,
        seed,
        noise,
        step,
        progress,
        callback,
        return_trajectory,
        in_kernel=kernel_lv is not None,
        row_offset=row_offset,
    )


@overload
def ddim(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    eta: float = ...,
    seed: int = ...,
    row_offset: int = ...,
    client: Any = ...,
    shard_size: int | None = ...,
    noise: Array | None = ...,
    backend: BackendName | str = ...,
    clip_denoised: bool = ...,
    denoised_fn: DenoisedFn | None = ...,
    variance: str = ...,
    progress: bool | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[False] = ...,
) -> Array: ...
@overload
def ddim(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    eta: float = ...,
    seed: int = ...,
    row_offset: int = ...,
    client: Any = ...,
    shard_size: int | None = ...,
    noise: Array | None = ...,
    backend: BackendName | str = ...,
    clip_denoised: bool = ...,
    denoised_fn: DenoisedFn | None = ...,
    variance: str = ...,
    progress: bool | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[True],
) -> tuple[Array, Array]: ...
@overload
def ddim(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    eta: float = ...,
    seed: int = ...,
    row_offset: int = ...,
    client: Any = ...,
    shard_size: int | None = ...,
    noise: Array | None = ...,
    backend: BackendName | str = ...,
    clip_denoised: bool = ...,
    denoised_fn: DenoisedFn | None = ...,
    variance: str = ...,
    progress: bool | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: bool,
) -> Array | tuple[Array, Array]: ...


def ddim(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    eta: float = 0.0,
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    noise: Array | None = None,
    backend: BackendName | str = "numpy",
    clip_denoised: bool = True,
    denoised_fn: DenoisedFn | None = None,
    variance: str = "model",
    progress: bool | None = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_trajectory: bool = False,
) -> Array | tuple[Array, Array]:
    """DDIM sampling with stochasticity η (Song et al. 2021, Eq. 12); see the module docstring.

    Returns x₀, or ``(x₀, trajectory)`` as :func:`ddpm`.
    """
    if client is not None:
        return sharded(ddim, dict(locals()))
    x, noise, variance = setup(
        diffusion, denoiser, x_T_or_shape, seed, noise, backend, variance, row_offset
    )
    eta = diffusion.check_eta(eta, np.arange(diffusion.num_timesteps))
    s = diffusion.schedule
    kernel_lv = check_kernel_path(diffusion, backend, variance, denoised_fn)

    def step(model_output, x_t, tb, orig, z, i):
        if kernel_lv is not None:
            x_prev = kernels.ddim_step(
                s,
                np.ascontiguousarray(x_t),
                tb,
                model_output,
                z,
                eta=eta,
                clip_denoised=clip_denoised,
                seed=None if z is not None else seed,
                stream=i,
                backend=backend,
            )
            return np.asarray(x_prev), None
        if variance == "model":
            out = diffusion.ddim_sample(
                model_output,
                x_t,
                tb,
                eta,
                z,
                clip_denoised=clip_denoised,
                denoised_fn=denoised_fn,
            )
            return out["sample"], out["pred_xstart"]
        out = diffusion.ddim_sample(
            model_output,
            x_t,
            tb,
            eta,
            np.zeros_like(x_t),
            clip_denoised=clip_denoised,
            denoised_fn=denoised_fn,
        )
        sigma = diffusion.ddim_sigma(tb, eta)
        ab, om = s.alphas_cumprod[tb], s.one_minus_alphas_cumprod[tb]
        ab_prev = s.alphas_cumprod_prev[tb]
        k = np.sqrt(np.maximum(1.0 - ab_prev - sigma**2, 0.0))
        P = np.sqrt(ab_prev) - k * np.sqrt(ab) / np.sqrt(om)
        extra = exact_noise(denoiser, x_t, tb, orig, P, sigma**2, z)
        return (out["sample"].astype(np.float64) + extra).astype(x_t.dtype), out["pred_xstart"]

    return run_loop(
        "ddim",
        diffusion,
        denoiser,
        x,
        seed,
        noise,
        step,
        progress,
        callback,
        return_trajectory,
        in_kernel=kernel_lv is not None,
        row_offset=row_offset,
    )
