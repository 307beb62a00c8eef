"""Adapters: how :func:`npddpm.conformance.check` talks to another implementation.

An adapter exposes what it can of: its ᾱ table, ``q_sample``, one DDPM step and one DDIM step,
with ``t`` the implementation's own (original) integer timestep. Everything is converted to
float64 NumPy arrays on the way back.

* :class:`CallablesAdapter` — fill in plain functions; the generic entry point.
* :class:`ImprovedDiffusionAdapter` — duck-typed, for improved-diffusion-style
  ``GaussianDiffusion`` objects (``q_sample``, ``p_sample``, ``ddim_sample`` taking a model).
* :class:`DiffusersAdapter` — diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` (optional
  extra: ``pip install 'npddpm[conform]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import choose
from ..diffusion import MEAN_TYPES, VAR_TYPES

__all__ = ["Adapter", "CallablesAdapter", "DiffusersAdapter", "ImprovedDiffusionAdapter"]

Array = np.ndarray


@dataclass
class Adapter:
    """What every adapter declares (the configuration npddpm reproduces).

    Attributes
    ----------
    name : str
    alphas_cumprod : ndarray (T,)
        The implementation's own ᾱ (any float dtype; upcast to float64 and injected into
        npddpm so schedule error is separated from step error).
    mean_type, var_type : str
        As :class:`npddpm.GaussianDiffusion`.
    clip_denoised : bool
    dtype : numpy dtype
        The implementation's working precision (sets the tolerances).
    timesteps : sequence of int
        The sampling chain, descending original timesteps (default: all of them).
    schedule : (name, kwargs) or None
        The named schedule the implementation claims to use (enables the schedule-table
        check against npddpm's construction).
    profile : str
        The npddpm profile expected to match (known divergences are reported against it).
    """

    name: str
    alphas_cumprod: Array
    mean_type: str = "eps"
    var_type: str = "fixed_small"
    clip_denoised: bool = True
    dtype: Any = np.float64
    timesteps: Sequence[int] | None = None
    schedule: tuple[str, dict] | None = None
    profile: str = "improved_diffusion"

    def __post_init__(self) -> None:
        choose(self.mean_type, "mean_type", MEAN_TYPES)
        choose(self.var_type, "var_type", VAR_TYPES)
        self.alphas_cumprod = np.asarray(self.alphas_cumprod)
        if self.alphas_cumprod.ndim != 1 or self.alphas_cumprod.size < 2:
            raise ValueError("alphas_cumprod must be a 1-D table of at least 2 steps")
        T = self.alphas_cumprod.size
        ts = np.arange(T)[::-1] if self.timesteps is None else np.asarray(self.timesteps)
        self.timesteps = [int(v) for v in ts]

    @property
    def num_timesteps(self) -> int:
        """T, the length of ``alphas_cumprod``."""
        return int(self.alphas_cumprod.size)

    # Each returns float64 arrays; None when the implementation does not offer it.
    def q_sample(self, x0: Array, t: int, noise: Array) -> Array | None:
        """x_t from ``x0`` (B, D) at original timestep ``t`` with ``noise`` (B, D); None here.

        An adapter that offers it returns the implementation's x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise,
        float64 (B, D); None means the implementation does not offer it.
        """
        return None

    def ddpm_step(self, model_output: Array, x_t: Array, t: int, noise: Array) -> tuple | None:
        """(x_prev, pred_x0 or None, noise actually used or None)."""
        return None

    def ddim_step(
        self, model_output: Array, x_t: Array, t: int, eta: float, noise: Array
    ) -> tuple | None:
        """One DDIM step of x_t (B, D) from original timestep ``t``; None here.

        An adapter that offers it returns ``(x_prev, pred_x0 or None, noise used or None)``,
        float64 (B, D), for ``model_output`` (x_t's shape, channels doubled for a learned
        variance), ``eta`` and ``noise`` (B, D); None means the implementation does not offer it.
        """
        return None


def _unpack(result: object) -> tuple | None:
    if result is None:
        return None
    if isinstance(result, tuple):
        parts = list(result) + [None] * (3 - len(result))
    else:
        parts = [result, None, None]
    return tuple(None if p is None else np.asarray(p, dtype=np.float64) for p in parts[:3])


@dataclass
class CallablesAdapter(Adapter):
    """An adapter from plain functions (any of them may be omitted).

    ``q_sample_fn(x0, t, noise) -> x_t``;
    ``ddpm_step_fn(model_output, x_t, t, noise) -> x_prev`` or ``(x_prev, pred_x0)``;
    ``ddim_step_fn(model_output, x_t, t, eta, noise) -> x_prev`` or ``(x_prev, pred_x0)``.
    ``t`` is the original integer timestep; arrays are (B, D) in the adapter's dtype.
    """

    q_sample_fn: Callable | None = None
    ddpm_step_fn: Callable | None = None
    ddim_step_fn: Callable | None = None
    extra: dict = field(default_factory=dict)

    def _cast(self, *arrays):
        return [np.asarray(a, dtype=self.dtype) for a in arrays]

    def q_sample(self, x0, t, noise):
        """``q_sample_fn(x0, t, noise)`` on inputs cast to the adapter's dtype, as float64 (B, D);
        None without ``q_sample_fn``."""
        if self.q_sample_fn is None:
            return None
        return np.asarray(
            self.q_sample_fn(*self._cast(x0), t, *self._cast(noise)), dtype=np.float64
        )

    def ddpm_step(self, model_output, x_t, t, noise):
        """``ddpm_step_fn(model_output, x_t, t, noise)`` on inputs cast to the adapter's dtype, as
        ``(x_prev, pred_x0, noise used)`` (missing parts None) in float64; None without
        ``ddpm_step_fn``."""
        if self.ddpm_step_fn is None:
            return None
        mo, xt, z = self._cast(model_output, x_t, noise)
        return _unpack(self.ddpm_step_fn(mo, xt, t, z))

    def ddim_step(self, model_output, x_t, t, eta, noise):
        """``ddim_step_fn(model_output, x_t, t, eta, noise)`` on inputs cast to the adapter's
        dtype, as ``(x_prev, pred_x0, noise used)`` (missing parts None) in float64; None
        without ``ddim_step_fn``."""
        if self.ddim_step_fn is None:
            return None
        mo, xt, z = self._cast(model_output, x_t, noise)
        return _unpack(self.ddim_step_fn(mo, xt, t, eta, z))


class ImprovedDiffusionAdapter(Adapter):
    """Duck-typed adapter for an improved-diffusion-style ``GaussianDiffusion``.

    Needs ``obj.alphas_cumprod``, ``obj.q_sample(x_start, t, noise=)``,
    ``obj.p_sample(model, x, t, clip_denoised=)`` and optionally ``obj.ddim_sample(model, x, t,
    clip_denoised=, eta=)``; tensors are built with ``to_tensor`` and read back with
    ``to_numpy`` (defaults: identity, for NumPy ports). Noise in ``p_sample`` is drawn by the
    implementation, so ``noise_fn`` must return the noise it will use (e.g. by seeding the
    framework's generator) — or pass ``noise_hook(noise)`` that installs it.
    """

    def __init__(
        self,
        obj: Any,
        *,
        name: str = "improved-diffusion",
        mean_type: str = "eps",
        var_type: str = "fixed_small",
        clip_denoised: bool = True,
        dtype=np.float32,
        to_tensor: Callable = lambda a: a,
        to_numpy: Callable = np.asarray,
        noise_hook: Callable | None = None,
        timestep_map: Sequence[int] | None = None,
    ):
        super().__init__(
            name=name,
            alphas_cumprod=np.asarray(obj.alphas_cumprod),
            mean_type=mean_type,
            var_type=var_type,
            clip_denoised=clip_denoised,
            dtype=dtype,
            timesteps=None if timestep_map is None else list(timestep_map)[::-1],
        )
        self.obj, self.to_tensor, self.to_numpy = obj, to_tensor, to_numpy
        self.noise_hook = noise_hook
        self._index = {int(v): i for i, v in enumerate(timestep_map or range(self.num_timesteps))}

    def _t(self, t: int, batch: int):
        return self.to_tensor(np.full(batch, self._index[t], dtype=np.int64))

    def q_sample(self, x0, t, noise):
        """``obj.q_sample(x0, index of t, noise=noise)`` in the adapter's dtype, float64 (B, D)."""
        out = self.obj.q_sample(
            self.to_tensor(x0.astype(self.dtype)),
            self._t(t, len(x0)),
            noise=self.to_tensor(noise.astype(self.dtype)),
        )
        return np.asarray(self.to_numpy(out), dtype=np.float64)

    def _model(self, model_output):
        mo = self.to_tensor(model_output.astype(self.dtype))
        return lambda x, t, **kw: mo

    def ddpm_step(self, model_output, x_t, t, noise):
        """``obj.p_sample`` on a model that returns ``model_output``, after ``noise_hook(noise)``.

        Returns ``(sample, pred_xstart, None)`` as float64 (B, D); None without ``noise_hook``
        (the implementation's own noise could not be matched).
        """
        if self.noise_hook is None:
            return None
        self.noise_hook(self.to_tensor(noise.astype(self.dtype)))
        out = self.obj.p_sample(
            self._model(model_output),
            self.to_tensor(x_t.astype(self.dtype)),
            self._t(t, len(x_t)),
            clip_denoised=self.clip_denoised,
        )
        return (
            np.asarray(self.to_numpy(out["sample"]), dtype=np.float64),
            np.asarray(self.to_numpy(out["pred_xstart"]), dtype=np.float64),
            None,
        )

    def ddim_step(self, model_output, x_t, t, eta, noise):
        """``obj.ddim_sample(..., eta=eta)`` on a model that returns ``model_output``.

        ``noise_hook(noise)`` is called first when given. Returns ``(sample, pred_xstart, None)``
        as float64 (B, D); None when ``obj`` has no ``ddim_sample``, or ``eta > 0`` without
        ``noise_hook``.
        """
        if not hasattr(self.obj, "ddim_sample") or (eta > 0 and self.noise_hook is None):
            return None
        if self.noise_hook is not None:
            self.noise_hook(self.to_tensor(noise.astype(self.dtype)))
        out = self.obj.ddim_sample(
            self._model(model_output),
            self.to_tensor(x_t.astype(self.dtype)),
            self._t(t, len(x_t)),
            clip_denoised=self.clip_denoised,
            eta=eta,
        )
        return (
            np.asarray(self.to_numpy(out["sample"]), dtype=np.float64),
            np.asarray(self.to_numpy(out["pred_xstart"]), dtype=np.float64),
            None,
        )


_HF_PRED = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
_HF_VAR = {
    "fixed_small": "fixed_small",
    "fixed_small_log": "fixed_small",
    "fixed_large": "fixed_large",
    "fixed_large_log": "fixed_large",
    "learned": "learned",
    "learned_range": "learned_range",
}


class DiffusersAdapter(Adapter):
    """diffusers ``DDPMScheduler`` or ``DDIMScheduler`` (needs torch and diffusers).

    ``num_inference_steps`` calls ``set_timesteps``; the chain is then the scheduler's own
    ``timesteps``. DDPM noise cannot be passed to ``DDPMScheduler.step``: the adapter seeds a
    ``torch.Generator`` and reports the noise that generator produces (diffusers draws it with
    ``torch.randn`` on the CPU), so npddpm can use the same noise.
    """

    def __init__(
        self,
        scheduler: Any,
        *,
        num_inference_steps: int | None = None,
        name: str | None = None,
        sample_dtype: Any = np.float32,
    ) -> None:
        import torch

        self.torch = torch
        self.sample_dtype = np.dtype(sample_dtype)
        self.sched = scheduler
        cfg = scheduler.config
        self.kind = "ddim" if type(scheduler).__name__.startswith("DDIM") else "ddpm"
        if num_inference_steps is not None:
            scheduler.set_timesteps(num_inference_steps)
            ts = [int(v) for v in scheduler.timesteps]
        else:
            ts = list(range(cfg.num_train_timesteps))[::-1]
        var = getattr(cfg, "variance_type", "fixed_small")
        sched = None
        if getattr(cfg, "trained_betas", None) is None:
            kw = {"beta_start": cfg.beta_start, "beta_end": cfg.beta_end}
            names = {
                "linear": ("linear_unscaled", kw),
                "scaled_linear": ("scaled_linear", kw),
                "squaredcos_cap_v2": ("cosine", {}),
                "sigmoid": ("sigmoid_beta", kw),
            }
            sched = names.get(cfg.beta_schedule)
        super().__init__(
            name=name or f"diffusers {type(scheduler).__name__}",
            alphas_cumprod=scheduler.alphas_cumprod.numpy(),
            mean_type=_HF_PRED[cfg.prediction_type],
            var_type=_HF_VAR.get(var, "fixed_small"),
            clip_denoised=bool(cfg.clip_sample),
            dtype=np.float32,
            timesteps=ts,
            schedule=sched,
            profile="diffusers",
        )

    def _tensor(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def q_sample(self, x0, t, noise):
        """``scheduler.add_noise(x0, noise, t)`` in ``sample_dtype``, as float64 (B, D)."""
        ts = self.torch.full((len(x0),), t, dtype=self.torch.long)
        # add_noise computes in the samples' dtype (float16: huggingface/diffusers PR #3005)
        dt = self.sample_dtype
        x0_t = self.torch.from_numpy(np.ascontiguousarray(x0, dtype=dt))
        z_t = self.torch.from_numpy(np.ascontiguousarray(noise, dtype=dt))
        return self.sched.add_noise(x0_t, z_t, ts).float().numpy().astype(np.float64)

    def ddpm_step(self, model_output, x_t, t, noise):
        """``DDPMScheduler.step`` with a seeded ``torch.Generator``; None for a DDIM scheduler.

        ``noise`` is ignored: the generator is seeded from hash((t, x_t.shape)) and the same draw,
        ``torch.randn(x_t.shape)`` float32, is returned as the noise used. Returns
        ``(prev_sample, pred_original_sample, noise used)``, float64 arrays of x_t's shape.
        """
        if self.kind != "ddpm":
            return None
        seed = int(abs(hash((t, x_t.shape))) % 2**31)
        g = self.torch.Generator().manual_seed(seed)
        used = self.torch.randn(x_t.shape, generator=g, dtype=self.torch.float32).numpy()
        g = self.torch.Generator().manual_seed(seed)
        out = self.sched.step(self._tensor(model_output), t, self._tensor(x_t), generator=g)
        return (
            out.prev_sample.numpy().astype(np.float64),
            out.pred_original_sample.numpy().astype(np.float64),
            used.astype(np.float64),
        )

    def ddim_step(self, model_output, x_t, t, eta, noise):
        """``DDIMScheduler.step(..., eta=eta, variance_noise=noise)``; None for a DDPM scheduler.

        Returns ``(prev_sample, pred_original_sample, None)``, float64 arrays of x_t's shape.
        """
        if self.kind != "ddim":
            return None
        out = self.sched.step(
            self._tensor(model_output),
            t,
            self._tensor(x_t),
            eta=eta,
            variance_noise=self._tensor(noise),
        )
        return (
            out.prev_sample.numpy().astype(np.float64),
            out.pred_original_sample.numpy().astype(np.float64),
            None,
        )
