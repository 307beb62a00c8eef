"""Adapters: how :func:`npddpm.conformance.check` talks to another implementation.

An adapter is told the configuration the implementation claims (keywords of
:class:`Adapter`) and exposes what it can of: its ᾱ table, ``q_sample``, one DDPM step and
one DDIM step, with ``t`` the implementation's own integer timestep. Inputs reach the
implementation in its dtype and in its shape (``sample_shape``: (D,) for vectors,
(C, H, W) for images); everything comes back as float64 NumPy arrays of shape (B, D).

* :class:`CallablesAdapter` — fill in plain functions; the generic entry point.
* :class:`ImprovedDiffusionAdapter` — duck-typed, for improved-diffusion-style
  ``GaussianDiffusion`` objects (``q_sample``, ``p_sample``, ``ddim_sample`` taking a model),
  respaced ones (``SpacedDiffusion``, ``timestep_map``) included.
* :class:`~npddpm.conformance.diffusers_adapter.DiffusersAdapter` — diffusers'
  ``DDPMScheduler`` / ``DDIMScheduler``.

What an adapter does not offer is declared in ``skipped`` (quantity → reason) and reported
as a skipped row, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import choose
from ..diffusion import MEAN_TYPES, VAR_TYPES
from ..profiles import get_profile

__all__ = ["Adapter", "CallablesAdapter", "ImprovedDiffusionAdapter", "StepResult"]

Array = np.ndarray
StepResult = tuple  # (x_prev, pred_x0 or None, noise used or None), float64 (B, D)


@dataclass
class Adapter:
    """What every adapter declares: the configuration the implementation claims.

    Attributes
    ----------
    name : str
    alphas_cumprod : ndarray (T,)
        The implementation's own ᾱ (any float dtype; upcast to float64 and injected into
        npddpm so schedule error is separated from step error).
    mean_type, var_type : str
        As :class:`npddpm.GaussianDiffusion`.
    clip_denoised : bool
        x̂₀ clipped to [−clip_range, clip_range].
    clip_range : float
    thresholding : (ratio, max_value) or None
        Dynamic thresholding of x̂₀ (Saharia et al. 2022); takes precedence over clipping.
    final_alpha : {"one", "alpha0"}
        DDIM's ᾱ after the last step: 1, or ᾱ₀ (diffusers ``set_alpha_to_one=False``).
    dtype : numpy dtype
        The implementation's working precision (sets the tolerances).
    q_dtype : numpy dtype, optional
        The precision its ``q_sample`` runs in, when not ``dtype`` (float16 samples).
    timesteps : sequence of int
        The sampling chain, descending timesteps (default: all of them).
    labels : sequence of int, optional
        The original timestep of each index, for the report (a respaced object's
        ``timestep_map``).
    schedule : (name, kwargs) or None
        The named schedule the implementation claims (enables the ᾱ-table check).
    rescale_zero_snr : bool
        The claimed schedule is rescaled to zero terminal SNR (Lin et al. 2024, Alg. 1).
    profile : str
        The npddpm profile whose documented divergences may explain its rows.
    sample_shape : tuple of int, optional
        The shape of one sample as the implementation takes it (default (D,)).
    skipped : dict
        Quantities the implementation does not offer → why (reported as skipped rows).
    findings : list of (quantity, description)
        What the adapter found wrong at construction (reported as failing rows).
    config : dict
        The implementation's own configuration as it claims it (e.g. a diffusers scheduler's
        config); a divergence of one option applies only where that option is set.
    """

    name: str
    alphas_cumprod: Array
    mean_type: str = "eps"
    var_type: str = "fixed_small"
    clip_denoised: bool = True
    clip_range: float = 1.0
    thresholding: tuple[float, float] | None = None
    final_alpha: str = "one"
    dtype: Any = np.float64
    q_dtype: Any = None
    timesteps: Sequence[int] | None = None
    labels: Sequence[int] | None = None
    schedule: tuple[str, dict] | None = None
    rescale_zero_snr: bool = False
    profile: str = "improved_diffusion"
    sample_shape: tuple[int, ...] | None = None
    skipped: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        choose(self.mean_type, "mean_type", MEAN_TYPES)
        choose(self.var_type, "var_type", VAR_TYPES)
        choose(self.final_alpha, "final_alpha", ("one", "alpha0"))
        get_profile(self.profile)  # a ValueError naming the known profiles
        self.alphas_cumprod = np.asarray(self.alphas_cumprod)
        if self.alphas_cumprod.ndim != 1 or self.alphas_cumprod.size < 2:
            raise ValueError(
                f"alphas_cumprod must be a 1-D table of at least 2 steps, got shape "
                f"{self.alphas_cumprod.shape}; pass the implementation's ᾱ_t for t = 0..T−1"
            )
        if not (isinstance(self.clip_range, (int, float)) and self.clip_range > 0):
            raise ValueError(f"clip_range must be a number > 0, got {self.clip_range!r}")
        if self.thresholding is not None:
            ratio, max_value = self.thresholding
            if not (0 < ratio <= 1 and max_value >= 1):
                raise ValueError(
                    f"thresholding must be (ratio in (0, 1], max_value >= 1), got "
                    f"{self.thresholding!r}"
                )
        T = self.alphas_cumprod.size
        ts = np.arange(T)[::-1] if self.timesteps is None else np.asarray(self.timesteps)
        if ts.ndim != 1 or ts.size == 0 or np.any((ts < 0) | (ts >= T)):
            raise ValueError(
                f"timesteps must be timesteps in [0, {T}), got {ts.tolist()[:8]}…; pass the "
                "chain the sampler visits, in the order it visits it"
            )
        self.timesteps = [int(v) for v in ts]
        if self.labels is not None:
            self.labels = [int(v) for v in self.labels]
            if len(self.labels) != T:
                raise ValueError(f"labels must give one original timestep per index ({T})")

    @property
    def num_timesteps(self) -> int:
        """T, the length of ``alphas_cumprod``."""
        return int(self.alphas_cumprod.size)

    @property
    def output_channels(self) -> int:
        """How many blocks of D values a model output has: 2 for a learned variance (mean,
        then variance channels), else 1."""
        return 2 if self.var_type.startswith("learned") else 1

    def label(self, t: int) -> int:
        """The original timestep of index ``t`` (``t`` itself without ``labels``)."""
        return t if self.labels is None else int(self.labels[t])

    def to_impl(self, a: Array, channels: int = 1) -> Array:
        """(B, channels·D) float64 → (B, channels·C, …) in the implementation's shape."""
        if self.sample_shape is None:
            return a
        parts = np.split(a, channels, axis=1)
        return np.concatenate([p.reshape((len(a), *self.sample_shape)) for p in parts], axis=1)

    def from_impl(self, a: Any) -> Array:
        """The implementation's output → float64 (B, D)."""
        arr = np.asarray(a, dtype=np.float64)
        return arr.reshape(arr.shape[0], -1)

    # Each returns float64 arrays; None when the implementation does not offer it.
    def q_sample(self, x0: Array, t: int, noise: Array) -> Array | None:
        """x_t from ``x0`` (B, D) at timestep ``t`` with ``noise`` (B, D); None here.

        An adapter that offers it returns the implementation's x_t, float64 (B, D).
        """
        return None

    def ddpm_step(self, model_output: Array, x_t: Array, t: int, noise: Array) -> StepResult | None:
        """One DDPM step: ``(x_prev, pred_x0 or None, noise used or None)``; None here.

        ``noise used`` is for implementations that draw their own noise (they report the draw
        instead of taking ``noise``); two calls with different ``noise`` must draw differently.
        """
        return None

    def ddim_step(
        self, model_output: Array, x_t: Array, t: int, eta: float, noise: Array
    ) -> StepResult | None:
        """One DDIM step of x_t (B, D) from timestep ``t``; None here.

        An adapter that offers it returns ``(x_prev, pred_x0 or None, noise used or None)``,
        float64 (B, D), for ``model_output`` (x_t's shape, channels doubled for a learned
        variance), ``eta`` and ``noise`` (B, D).
        """
        return None


def _unpack(adapter: Adapter, result: object) -> StepResult | None:
    if result is None:
        return None
    if isinstance(result, tuple):
        parts = list(result) + [None] * (3 - len(result))
    else:
        parts = [result, None, None]
    return tuple(None if p is None else adapter.from_impl(p) for p in parts[:3])


@dataclass
class CallablesAdapter(Adapter):
    """An adapter from plain functions (any of them may be omitted; what is omitted is
    reported as skipped).

    ``q_sample_fn(x0, t, noise) -> x_t``;
    ``ddpm_step_fn(model_output, x_t, t, noise) -> x_prev`` or ``(x_prev, pred_x0)``;
    ``ddim_step_fn(model_output, x_t, t, eta, noise) -> x_prev`` or ``(x_prev, pred_x0)``.
    ``t`` is the integer timestep; arrays are in the adapter's dtype and
    ``(B, *sample_shape)``.
    """

    q_sample_fn: Callable | None = None
    ddpm_step_fn: Callable | None = None
    ddim_step_fn: Callable | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for fn, what in (
            (self.q_sample_fn, "q_sample"),
            (self.ddpm_step_fn, "ddpm"),
            (self.ddim_step_fn, "ddim"),
        ):
            if fn is None:
                self.skipped.setdefault(what, f"no {what}_fn given")
            elif not callable(fn):
                raise TypeError(f"{what}_fn must be callable, got {type(fn).__name__}")

    def _cast(self, *arrays: Array, channels: int = 1) -> list[Array]:
        return [np.asarray(self.to_impl(a, channels), dtype=self.dtype) for a in arrays]

    def _mo(self, mo: Array) -> Array:
        return self._cast(mo, channels=self.output_channels)[0]

    def q_sample(self, x0, t, noise):
        """``q_sample_fn(x0, t, noise)`` in the adapter's dtype and shape, float64 (B, D)."""
        if self.q_sample_fn is None:
            return None
        x0c, zc = self._cast(x0, noise)
        return self.from_impl(self.q_sample_fn(x0c, t, zc))

    def ddpm_step(self, model_output, x_t, t, noise):
        """``ddpm_step_fn(model_output, x_t, t, noise)`` → ``(x_prev, pred_x0, None)``."""
        if self.ddpm_step_fn is None:
            return None
        xt, z = self._cast(x_t, noise)
        return _unpack(self, self.ddpm_step_fn(self._mo(model_output), xt, t, z))

    def ddim_step(self, model_output, x_t, t, eta, noise):
        """``ddim_step_fn(model_output, x_t, t, eta, noise)`` → ``(x_prev, pred_x0, None)``."""
        if self.ddim_step_fn is None:
            return None
        xt, z = self._cast(x_t, noise)
        return _unpack(self, self.ddim_step_fn(self._mo(model_output), xt, t, eta, z))


class ImprovedDiffusionAdapter(Adapter):
    """Duck-typed adapter for an improved-diffusion-style ``GaussianDiffusion``.

    Needs ``obj.alphas_cumprod``, ``obj.q_sample(x_start, t, noise=)``,
    ``obj.p_sample(model, x, t, clip_denoised=)`` and optionally ``obj.ddim_sample(model, x, t,
    clip_denoised=, eta=)``. Tensors are built with ``to_tensor`` and read back with
    ``to_numpy`` (defaults: identity, for NumPy ports). ``p_sample`` draws its own noise, so
    ``noise_hook(noise)`` must make its next draw be ``noise`` (e.g. replace the object's
    ``randn_like``); without a hook, pass ``skip=("ddpm",)`` to say the DDPM step (and DDIM
    with η > 0) goes unchecked — the report then lists them as skipped.

    A respaced object (improved-diffusion's ``SpacedDiffusion``) holds the ᾱ of its retained
    steps and takes their indices; give its ``timestep_map`` so the report speaks in original
    timesteps. ``schedule=(name, kwargs)`` claims the named schedule the object was built from
    (its ᾱ is then checked at the retained steps).
    """

    def __init__(
        self,
        obj: Any,
        *,
        name: str = "improved-diffusion",
        mean_type: str = "eps",
        var_type: str = "fixed_small",
        clip_denoised: bool = True,
        dtype: Any = np.float32,
        to_tensor: Callable = lambda a: a,
        to_numpy: Callable = np.asarray,
        noise_hook: Callable | None = None,
        timestep_map: Sequence[int] | None = None,
        schedule: tuple[str, dict] | None = None,
        sample_shape: tuple[int, ...] | None = None,
        skip: Sequence[str] = (),
    ) -> None:
        for attr in ("alphas_cumprod", "q_sample", "p_sample"):
            if not hasattr(obj, attr):
                raise TypeError(
                    f"ImprovedDiffusionAdapter needs an object with {attr!r} (an "
                    f"improved-diffusion-style GaussianDiffusion); {type(obj).__name__} has none"
                )
        bad = set(skip) - {"ddpm", "ddim", "q_sample"}
        if bad:
            raise ValueError(
                f"skip: unknown quantities {sorted(bad)}; use 'ddpm', 'ddim', 'q_sample'"
            )
        if noise_hook is None and "ddpm" not in skip:
            raise ValueError(
                "ImprovedDiffusionAdapter: p_sample draws its own noise, so the DDPM step can only "
                "be checked with noise_hook(noise), a function that makes the object's next draw "
                "be `noise`; pass one, or skip=('ddpm',) to leave the DDPM step unchecked"
            )
        ab = np.asarray(to_numpy(obj.alphas_cumprod), dtype=np.float64)
        skipped = {q: "skip= given" for q in skip}
        if not hasattr(obj, "ddim_sample"):
            skipped.setdefault("ddim", "the object has no ddim_sample")
        super().__init__(
            name=name,
            alphas_cumprod=ab,
            mean_type=mean_type,
            var_type=var_type,
            clip_denoised=clip_denoised,
            dtype=dtype,
            labels=None if timestep_map is None else list(timestep_map),
            schedule=schedule,
            sample_shape=sample_shape,
            skipped=skipped,
        )
        self.obj, self.to_tensor, self.to_numpy = obj, to_tensor, to_numpy
        self.noise_hook = noise_hook

    def _t(self, t: int, batch: int) -> Any:
        return self.to_tensor(np.full(batch, t, dtype=np.int64))

    def _in(self, a: Array, channels: int = 1) -> Any:
        return self.to_tensor(np.ascontiguousarray(self.to_impl(a, channels), dtype=self.dtype))

    def _out(self, a: Any) -> Array:
        return self.from_impl(self.to_numpy(a))

    def q_sample(self, x0, t, noise):
        """``obj.q_sample(x0, t, noise=noise)`` in the adapter's dtype, float64 (B, D)."""
        if "q_sample" in self.skipped:
            return None
        out = self.obj.q_sample(self._in(x0), self._t(t, len(x0)), noise=self._in(noise))
        return self._out(out)

    def _model(self, model_output: Array) -> Callable:
        mo = self._in(model_output, self.output_channels)
        return lambda x, t, **kw: mo

    def ddpm_step(self, model_output, x_t, t, noise):
        """``obj.p_sample`` on a model that returns ``model_output``, after
        ``noise_hook(noise)``: ``(sample, pred_xstart, None)`` as float64 (B, D)."""
        if "ddpm" in self.skipped or self.noise_hook is None:
            return None
        self.noise_hook(self._in(noise))
        out = self.obj.p_sample(
            self._model(model_output),
            self._in(x_t),
            self._t(t, len(x_t)),
            clip_denoised=self.clip_denoised,
        )
        return self._out(out["sample"]), self._out(out["pred_xstart"]), None

    def ddim_step(self, model_output, x_t, t, eta, noise):
        """``obj.ddim_sample(..., eta=eta)`` on a model that returns ``model_output``
        (``noise_hook(noise)`` first, when given): ``(sample, pred_xstart, None)``; None for
        η > 0 without a hook."""
        if "ddim" in self.skipped or (eta > 0 and self.noise_hook is None):
            return None
        if self.noise_hook is not None:
            self.noise_hook(self._in(noise))
        out = self.obj.ddim_sample(
            self._model(model_output),
            self._in(x_t),
            self._t(t, len(x_t)),
            clip_denoised=self.clip_denoised,
            eta=eta,
        )
        return self._out(out["sample"]), self._out(out["pred_xstart"]), None
