"""The adapter for diffusers' ``DDPMScheduler`` and ``DDIMScheduler`` (and their subclasses).

The scheduler's whole configuration is read once, at construction, and frozen: what the
scheduler claims then is what npddpm reproduces, so a scheduler whose behaviour later
contradicts its config (a config rewritten after construction, a subclass that ignores an
option) is reported as a fault. Every documented option is a reference option:

====================================  ==========================================================
diffusers config                      npddpm reference
====================================  ==========================================================
``prediction_type``                   ``mean_type`` (epsilon → eps, sample → x0, v_prediction → v)
``variance_type``                     ``var_type`` (the ``_log`` forms sample the same law)
``clip_sample``, ``clip_sample_range``  x̂₀ clipped to [−r, r]
``thresholding``,                     :func:`npddpm.thresholding.dynamic_threshold`
``dynamic_thresholding_ratio``,
``sample_max_value``
``rescale_betas_zero_snr``            :func:`npddpm.betas.rescale_zero_terminal_snr`
``set_alpha_to_one`` (DDIM)           DDIM's final ᾱ: 1 or ᾱ₀
``steps_offset``,                     the chain, :func:`npddpm.schedules.diffusers_timesteps`
``timestep_spacing``
``beta_schedule``, ``beta_start``,    the ᾱ table, :func:`npddpm.schedules.get_named_beta_schedule`
``beta_end``, ``trained_betas``
====================================  ==========================================================

What npddpm cannot check is refused at construction with a one-line reason.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from .adapters import Adapter

__all__ = ["DiffusersAdapter"]

Array = np.ndarray

_HF_PRED = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
_HF_VAR = {
    "fixed_small": "fixed_small",
    "fixed_small_log": "fixed_small",
    "fixed_large": "fixed_large",
    "fixed_large_log": "fixed_large",
    "learned": "learned",
    "learned_range": "learned_range",
}
_HF_SCHEDULES = {
    "linear": "linear_unscaled",
    "scaled_linear": "scaled_linear",
    "squaredcos_cap_v2": "cosine",
    "sigmoid": "sigmoid_beta",
}
_SPACINGS = ("leading", "trailing", "linspace")


def _claimed(cfg: Any, key: str, allowed: dict | tuple, cls: str) -> Any:
    value = cfg.get(key)
    if value not in allowed:
        raise ValueError(
            f"DiffusersAdapter: {cls} config {key}={value!r} is not an option npddpm knows; "
            f"known: {', '.join(map(repr, allowed))}"
        )
    return value


class DiffusersAdapter(Adapter):
    """diffusers ``DDPMScheduler`` or ``DDIMScheduler`` (needs torch and diffusers).

    Parameters
    ----------
    scheduler
        A ``DDPMScheduler`` or ``DDIMScheduler`` (or a subclass). Its config is read now.
    num_inference_steps : int, optional
        Calls ``set_timesteps``; the chain is then the scheduler's own ``timesteps``.
    name : str, optional
    sample_dtype : numpy dtype
        The dtype of the samples given to ``add_noise`` (float16 is a documented case).
    sample_shape : tuple of int, optional
        One sample's shape as the scheduler receives it (default ``(D, 1, 1)``, image-shaped,
        since dynamic thresholding needs a channel axis and spatial axes).

    DDPM noise cannot be passed to ``DDPMScheduler.step``: the adapter seeds a
    ``torch.Generator`` from the noise it is given and reports the draw that generator makes
    (``torch.randn`` on the CPU), so npddpm uses the same noise.
    """

    def __init__(
        self,
        scheduler: Any,
        *,
        num_inference_steps: int | None = None,
        name: str | None = None,
        sample_dtype: Any = np.float32,
        sample_shape: tuple[int, ...] | None = None,
    ) -> None:
        import torch

        try:
            import diffusers
        except ImportError:  # pragma: no cover - torch without diffusers
            raise ImportError(
                "DiffusersAdapter needs diffusers: pip install 'npddpm[conform]'"
            ) from None
        cls = type(scheduler).__name__
        if isinstance(scheduler, diffusers.DDIMScheduler):
            kind = "ddim"
        elif isinstance(scheduler, diffusers.DDPMScheduler):
            kind = "ddpm"
        elif cls == "DDIMInverseScheduler":
            raise ValueError(
                "DiffusersAdapter: DDIMInverseScheduler runs the chain upwards (x_t → x_{t+1}); "
                "npddpm's conformance check does not cover inversion yet — pass a DDIMScheduler"
            )
        else:
            raise ValueError(
                f"DiffusersAdapter: cannot drive {cls}; it takes DDPMScheduler, DDIMScheduler "
                "or a subclass of either (other schedulers: wrap them in a CallablesAdapter)"
            )
        self.torch, self.kind, self.sched = torch, kind, scheduler
        self.sample_dtype = np.dtype(sample_dtype)
        cfg = dict(scheduler.config)  # frozen: what the scheduler claims at construction
        T = int(cfg["num_train_timesteps"])
        pred = _HF_PRED[_claimed(cfg, "prediction_type", tuple(_HF_PRED), cls)]
        if kind == "ddpm":
            var = _HF_VAR[_claimed(cfg, "variance_type", tuple(_HF_VAR), cls)]
        else:
            var = "fixed_small"  # DDIM has no variance_type: σ(η) is its own
        _claimed(cfg, "timestep_spacing", _SPACINGS, cls)
        sched = None
        if cfg.get("trained_betas") is None:
            schedule = _claimed(cfg, "beta_schedule", tuple(_HF_SCHEDULES), cls)
            kw = {"beta_start": cfg["beta_start"], "beta_end": cfg["beta_end"]}
            sched = (_HF_SCHEDULES[schedule], {} if schedule == "squaredcos_cap_v2" else kw)
        thresholding = None
        if cfg.get("thresholding"):
            thresholding = (
                float(cfg["dynamic_thresholding_ratio"]),
                float(cfg["sample_max_value"]),
            )
        if num_inference_steps is not None:
            scheduler.set_timesteps(num_inference_steps)
            ts = [int(v) for v in scheduler.timesteps]
        elif kind == "ddim":
            raise ValueError(
                "DiffusersAdapter: a DDIMScheduler needs num_inference_steps (its step "
                "divides by it); pass e.g. num_inference_steps=50"
            )
        else:
            ts = list(range(T))[::-1]
        bad = [t for t in ts if not 0 <= t < T]
        findings = []
        if bad:  # a finding, not a crash: the chain is checked without them
            findings.append(
                (
                    "chain",
                    f"the chain has {len(bad)} timestep(s) outside [0, {T}): {bad[:4]} "
                    "(diffusers reads t = −1 as ᾱ_{T−1}; 'trailing' spacing returns N + 1 steps "
                    "ending in −1 for some N, docs/FINDINGS.md §1)",
                )
            )
            ts = [t for t in ts if 0 <= t < T]
        super().__init__(
            name=name or f"diffusers {cls}",
            alphas_cumprod=scheduler.alphas_cumprod.numpy(),
            mean_type=pred,
            var_type=var,
            clip_denoised=bool(cfg.get("clip_sample", False)) or thresholding is not None,
            clip_range=float(cfg.get("clip_sample_range", 1.0)),
            thresholding=thresholding,
            final_alpha="one" if cfg.get("set_alpha_to_one", True) else "alpha0",
            dtype=np.float32,
            q_dtype=self.sample_dtype,
            timesteps=ts,
            schedule=sched,
            rescale_zero_snr=bool(cfg.get("rescale_betas_zero_snr", False)),
            profile="diffusers",
            sample_shape=sample_shape,
            findings=findings,
            config=cfg,
        )

    def to_impl(self, a: Array, channels: int = 1) -> Array:
        """(B, channels·D) → (B, channels·C, …); default one sample is (D, 1, 1)."""
        if self.sample_shape is None:
            return a.reshape((*a.shape, 1, 1))
        return super().to_impl(a, channels)

    def _tensor(self, a: Array, channels: int = 1, dtype: Any = np.float32) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(self.to_impl(a, channels), dtype=dtype))

    def _mo(self, mo: Array) -> Any:
        return self._tensor(mo, self.output_channels)

    def q_sample(self, x0, t, noise):
        """``scheduler.add_noise(x0, noise, t)`` in ``sample_dtype``, as float64 (B, D)."""
        ts = self.torch.full((len(x0),), t, dtype=self.torch.long)
        # add_noise computes in the samples' dtype (float16: huggingface/diffusers PR #3005)
        x0_t = self._tensor(x0, dtype=self.sample_dtype)
        z_t = self._tensor(noise, dtype=self.sample_dtype)
        return self.from_impl(self.sched.add_noise(x0_t, z_t, ts).float().numpy())

    def ddpm_step(self, model_output, x_t, t, noise):
        """``DDPMScheduler.step`` with a ``torch.Generator`` seeded from ``noise`` and ``t``;
        None for a DDIM scheduler.

        The generator's draw, ``torch.randn`` float32 of the sample's shape, is returned as the
        noise used: ``(prev_sample, pred_original_sample, noise used)`` as float64 (B, D).
        """
        if self.kind != "ddpm":
            return None
        seed = zlib.crc32(np.ascontiguousarray(noise).tobytes() + t.to_bytes(4, "little"))
        shape = self.to_impl(x_t).shape
        g = self.torch.Generator().manual_seed(seed)
        used = self.torch.randn(shape, generator=g, dtype=self.torch.float32).numpy()
        g = self.torch.Generator().manual_seed(seed)
        out = self.sched.step(self._mo(model_output), t, self._tensor(x_t), generator=g)
        return (
            self.from_impl(out.prev_sample.numpy()),
            self.from_impl(out.pred_original_sample.numpy()),
            self.from_impl(used),
        )

    def ddim_step(self, model_output, x_t, t, eta, noise):
        """``DDIMScheduler.step(..., eta=eta, variance_noise=noise)``; None for a DDPM
        scheduler. Returns ``(prev_sample, pred_original_sample, None)`` as float64 (B, D)."""
        if self.kind != "ddim":
            return None
        out = self.sched.step(
            self._mo(model_output),
            t,
            self._tensor(x_t),
            eta=eta,
            variance_noise=self._tensor(noise),
        )
        return (
            self.from_impl(out.prev_sample.numpy()),
            self.from_impl(out.pred_original_sample.numpy()),
            None,
        )
