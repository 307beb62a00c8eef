"""The adapters :func:`npddpm.conformance.check_solver` drives: a scheduler with diffusers'
interface (:class:`SolverAdapter`, :class:`DiffusersSolverAdapter`), a k-diffusion-style loop
(:class:`KarrasLoopAdapter`), a step function (:class:`StepFunctionAdapter`), and the
:class:`SolverClaim` each makes. Every model call is npddpm's exact model at the σ the solver
uses for that call."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analytic import GaussianMixture

__all__ = [
    "DiffusersSolverAdapter",
    "KarrasLoopAdapter",
    "SolverAdapter",
    "SolverClaim",
    "StepFunctionAdapter",
]

Array = np.ndarray


@dataclass
class SolverClaim:
    """What a scheduler claims to be.

    ``reference``: an :mod:`npddpm.samplers` solver name (None: no reference, contract and
    order only); ``kwargs`` its options; ``order`` the claimed order (None: not claimed);
    ``stochastic``: noise is drawn, so the output law is checked instead of agreement and
    order; ``count(N)``: the
    documented number of timesteps; ``final``: ``"zero"`` or ``"sigma_min"``;
    ``variants``: named alternative references, ``{diagnosis: (kwargs, source)}``;
    ``levels(N)``: the documented σ list before the final level (None: not checked).
    """

    reference: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    order: float | None = None
    stochastic: bool = False
    count: Callable[[int], int] = lambda n: n
    final: str = "zero"
    variants: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    interleaved: bool = False  # Heun in diffusers: σ = [σ0, σ1, σ1, σ2, σ2, …, 0]
    levels: Callable[[int], Array] | None = None


class SolverAdapter:
    """A scheduler with diffusers' interface; subclass and set ``make`` (a fresh scheduler),
    ``claim``, ``name``, ``config``, ``flow`` (its σ is the flow σ, x = (1 − σ)x₀ + σε) and
    ``prediction`` (``"epsilon"``, ``"sample"``, ``"v_prediction"`` or ``"flow"``)."""

    name = "solver"
    flow = False
    prediction = "epsilon"
    dtype = "float64"  #: the state's precision in the scheduler's loop ("float32" as in use)
    claim: SolverClaim
    config: dict[str, Any]

    def make(self) -> Any:
        """A fresh scheduler object (diffusers' interface); called once per loop."""
        raise NotImplementedError

    def levels(self, n: int) -> tuple[Array, Array, Any]:
        """(timesteps, sigmas, scheduler) after ``set_timesteps(n)`` (with the adapter's
        ``set_timesteps`` dict of extra arguments, e.g. ``mu``, where it has one)."""
        s = self.make()
        s.set_timesteps(n, **(getattr(self, "set_timesteps", None) or {}))
        return (np.asarray(s.timesteps, dtype=np.float64), np.asarray(s.sigmas, np.float64), s)

    def run(self, n: int, mixture: GaussianMixture, x_T: Array,
            record: list[Array] | None = None) -> tuple[Array, Array]:
        """The scheduler's loop with the exact model; ``x_T`` in the path's own scale at the
        first level (VP x, or the flow's x). Returns (output, sigmas); ``record`` receives the
        state after every ``step`` call, in that scale."""
        import torch

        _, sig, s = self.levels(n)
        s0 = float(sig[0])
        ve_scaled = self.ve_scaled(s)
        tdt = torch.float32 if self.dtype == "float32" else torch.float64
        x = (torch.tensor(x_T) * (math.sqrt(1 + s0 * s0) if ve_scaled else 1.0)).to(tdt)
        for t in s.timesteps:
            idx = s.step_index if s.step_index is not None else 0
            level = float(s.sigmas[idx])
            xin = s.scale_model_input(x, t) if hasattr(s, "scale_model_input") else x
            out = self._model(mixture, xin.numpy().astype(np.float64), level)
            x = s.step(torch.tensor(out).to(tdt), t, x).prev_sample
            if record is not None:
                nxt = float(s.sigmas[min(s.step_index, len(s.sigmas) - 1)])
                scale = math.sqrt(1 + nxt * nxt) if ve_scaled else 1.0
                record.append(np.asarray(x.numpy(), dtype=np.float64) / scale)
        return np.asarray(x.numpy(), dtype=np.float64), sig

    def ve_scaled(self, s: Any) -> bool:
        """Whether scheduler ``s`` carries the VE-scaled state x̃ = x/α (its init_noise_sigma is
        σ̃_max, not 1), as the Euler family does."""
        return not self.flow and float(getattr(s, "init_noise_sigma", 1.0)) > 1.5

    def final_level(self, s: Any) -> float:
        """The σ the loop must end at: 0, or σ_min (the table's t = 0) where configured."""
        if self.flow or self.claim.final == "zero":
            return 0.0
        ac = np.asarray(s.alphas_cumprod, dtype=np.float64)
        return math.sqrt((1 - ac[0]) / ac[0])

    def sigma_mismatch(self, ts: Array, sig: Array, s: Any) -> float | None:
        """max relative difference of the σ of each timestep (its table, either
        interpolation) from the σ its step uses; None where the model is given σ itself."""
        used = sig[: ts.size]
        if not used.size:
            return 0.0
        if self.flow:
            return float(np.max(np.abs(ts / 1000.0 - used)))
        ac = np.asarray(s.alphas_cumprod, dtype=np.float64)
        table = np.sqrt((1 - ac) / ac)
        grid = np.arange(ac.size, dtype=np.float64)
        lin = np.interp(ts, grid, table)
        log = np.exp(np.interp(ts, grid, np.log(table)))
        return float(np.max(np.minimum(np.abs(lin - used), np.abs(log - used)) / used))

    def _model(self, mixture: GaussianMixture, x: Array, level: float) -> Array:
        if self.flow:
            a, sg = 1.0 - level, level
        else:
            a = 1.0 / math.sqrt(1.0 + level * level)
            sg = level * a
        x0 = mixture.posterior_mean_at(x, a, sg)
        eps = (x - a * x0) / sg
        if self.prediction == "flow":
            return eps - x0
        if self.prediction == "sample":
            return x0
        if self.prediction == "v_prediction":
            return a * eps - sg * x0
        return eps


class DiffusersSolverAdapter(SolverAdapter):
    """A diffusers solver scheduler, by class (or its name in ``diffusers``) and config
    (T = 1000 unless given). A subclass is claimed to be what its diffusers base class is."""

    def __init__(self, cls: str | type, config: dict[str, Any] | None = None, *,
                 name: str | None = None, claim: SolverClaim | None = None,
                 set_timesteps: dict[str, Any] | None = None) -> None:
        import diffusers

        self.set_timesteps = dict(set_timesteps or {})

        if isinstance(cls, str):
            self.cls = getattr(diffusers, cls)
        else:
            self.cls = cls
        base = next((c for c in self.cls.__mro__ if c.__module__.startswith("diffusers")),
                    self.cls)
        cls_name: str = base.__name__
        self.cls_name = cls_name
        self.config = dict(config or {})
        if not cls_name.startswith("FlowMatch"):
            self.config.setdefault("num_train_timesteps", 1000)
        made = self.make()  # diffusers refuses bad configurations here
        shown = ", ".join(f"{k}={v!r}" for k, v in (config or {}).items())
        self.name = name or f"diffusers {self.cls.__name__}({shown})" + "".join(
            f", set_timesteps({k}={v!r})" for k, v in self.set_timesteps.items())
        self.flow = cls_name.startswith("FlowMatch")
        self.prediction = "flow" if self.flow else self.config.get("prediction_type", "epsilon")
        self.claim = claim or _claim(cls_name, made.config, self.set_timesteps)

    def make(self) -> Any:
        """A fresh ``cls(**config)``."""
        return self.cls(**self.config)


class KarrasLoopAdapter(SolverAdapter):
    """A whole sampling loop in k-diffusion's convention: ``sample(model, x, sigmas)`` with the
    VE-scaled x̃ = x/α, ``model(x̃, σ) -> D`` (the x₀ estimate, σ one per row) and ``sigmas`` the
    N + 1 levels (``sigmas_fn(N)``, e.g. k-diffusion's ``get_sigmas_karras``), ending at 0.

    ``claim`` says which npddpm solver it is (e.g. ``SolverClaim("heun", order=2)``). Extra
    keyword arguments go to ``sample`` (e.g. ``disable=True`` for its progress bar).
    """

    def __init__(self, sample: Callable[..., Any], sigmas_fn: Callable[[int], Any],
                 claim: SolverClaim, *, name: str | None = None, **sample_kwargs: Any) -> None:
        if not callable(sample) or not callable(sigmas_fn):
            raise TypeError("sample and sigmas_fn must be callables")
        self.sample, self.sigmas_fn, self.claim = sample, sigmas_fn, claim
        self.kwargs = sample_kwargs
        self.name = str(name or getattr(sample, "__name__", "loop"))
        self.config = {"sample": self.name, **{k: repr(v) for k, v in sample_kwargs.items()}}
        self.prediction = "sample"

    def make(self) -> Any:
        """None: this adapter runs its own loop and has no scheduler object."""
        return None

    def levels(self, n: int) -> tuple[Array, Array, Any]:
        sig = np.asarray(self.sigmas_fn(n), dtype=np.float64)
        return sig[:-1], sig, None

    def final_level(self, s: Any) -> float:
        return 0.0

    def sigma_mismatch(self, ts: Array, sig: Array, s: Any) -> float | None:
        return None  # the model is given σ itself

    def run(self, n: int, mixture: GaussianMixture, x_T: Array,
            record: list[Array] | None = None) -> tuple[Array, Array]:
        import torch

        sig = np.asarray(self.sigmas_fn(n), dtype=np.float64)
        s0 = float(sig[0])

        def model(x: Any, sigma: Any) -> Any:
            level = float(np.asarray(sigma.detach().cpu()).reshape(-1)[0])
            a = 1.0 / math.sqrt(1.0 + level * level)
            x0 = mixture.posterior_mean_at(x.detach().cpu().numpy() * a, a, level * a)
            return torch.tensor(x0, dtype=x.dtype)

        x = torch.tensor(x_T * math.sqrt(1 + s0 * s0))
        out = self.sample(model, x, torch.tensor(sig, dtype=x.dtype), **self.kwargs)
        last = float(sig[-1])
        return np.asarray(out.numpy(), dtype=np.float64) / math.sqrt(1 + last * last), sig


class StepFunctionAdapter(SolverAdapter):
    """Your solver as two functions, one model call per step.

    ``sigmas(N)`` gives the N + 1 VE levels σ̃ (noisiest first; the last 0 or σ_min).
    ``step(model_output, i, x, sigmas)`` returns the state after step i, with x in the VE scale
    x̃ = x/α (k-diffusion's and diffusers' Euler-family convention). The model is npddpm's
    exact one, at ``sigmas[i]``, given the VP-scale x = x̃/√(1 + σ̃²) and predicting
    ``prediction`` (``"epsilon"``, ``"sample"`` or ``"v_prediction"``). Methods with several
    model calls per step need a :class:`SolverAdapter` subclass (or :class:`KarrasLoopAdapter`
    for a whole loop).
    """

    def __init__(self, sigmas: Callable[[int], Any], step: Callable[..., Any],
                 claim: SolverClaim, *, prediction: str = "epsilon",
                 name: str = "step function") -> None:
        if not callable(sigmas) or not callable(step):
            raise TypeError("sigmas and step must be callables")
        if prediction not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(
                f"prediction must be 'epsilon', 'sample' or 'v_prediction', got {prediction!r}"
            )
        self.sigmas_fn, self.step_fn, self.claim = sigmas, step, claim
        self.prediction, self.name = prediction, str(name)
        self.config = {"step": getattr(step, "__name__", "step"), "prediction": prediction}

    def make(self) -> Any:
        """None: this adapter runs its own loop and has no scheduler object."""
        return None

    def levels(self, n: int) -> tuple[Array, Array, Any]:
        sig = np.asarray(self.sigmas_fn(n), dtype=np.float64)
        self._last = float(sig[-1])
        return sig[:-1], sig, None

    def final_level(self, s: Any) -> float:
        # "zero": the data; otherwise the claim accepts the level the sigmas end at
        return 0.0 if self.claim.final == "zero" else self._last

    def sigma_mismatch(self, ts: Array, sig: Array, s: Any) -> float | None:
        return None  # the model is evaluated at the σ of each step

    def run(self, n: int, mixture: GaussianMixture, x_T: Array,
            record: list[Array] | None = None) -> tuple[Array, Array]:
        sig = np.asarray(self.sigmas_fn(n), dtype=np.float64)
        x = np.asarray(x_T, dtype=np.float64) * math.sqrt(1 + float(sig[0]) ** 2)
        for i in range(sig.size - 1):
            level = float(sig[i])
            out = self._model(mixture, x / math.sqrt(1 + level * level), level)
            x = np.asarray(self.step_fn(out, i, x, sig), dtype=np.float64)
            if record is not None:
                record.append(x / math.sqrt(1 + float(sig[i + 1]) ** 2))
        return x / math.sqrt(1 + float(sig[-1]) ** 2), sig


def _flow_levels(cfg: Any, mu: float | None) -> Callable[[int], Array] | None:
    """FlowMatchEuler's documented σ list (SD3, Esser et al. 2024, Eq. 23; the scheduler's
    docstring): a shift applied once to N times uniform on [1/T, 1], t = linspace(1, 1/T, N):
    static, σ = s·t/(1 + (s − 1)·t); dynamic (``use_dynamic_shifting`` with ``mu``), σ =
    e^μ/(e^μ + (1/t − 1)) (``time_shift_type="exponential"``) or μ/(μ + (1/t − 1))
    (``"linear"``). None for the options that change it otherwise (Karras/exponential/beta σ,
    a terminal stretch, inverted σ) and for dynamic shifting without a μ."""
    if any(getattr(cfg, k, False) for k in ("use_karras_sigmas", "use_exponential_sigmas",
                                             "use_beta_sigmas", "shift_terminal",
                                             "invert_sigmas")):
        return None
    dynamic = bool(getattr(cfg, "use_dynamic_shifting", False))
    if dynamic and mu is None:
        return None
    shift, T = float(cfg.shift), int(cfg.num_train_timesteps)
    kind = getattr(cfg, "time_shift_type", "exponential")

    def levels(n: int) -> Array:
        t = np.linspace(1.0, 1.0 / T, n)
        if not dynamic:
            return shift * t / (1.0 + (shift - 1.0) * t)
        m = math.exp(float(mu)) if kind == "exponential" else float(mu)  # type: ignore[arg-type]
        return m / (m + (1.0 / t - 1.0))

    return levels


def _claim(cls: str, cfg: Any, set_timesteps: dict[str, Any] | None = None) -> SolverClaim:
    """The claim of a diffusers scheduler, from its class and config (its documentation)."""
    final = getattr(cfg, "final_sigmas_type", "zero") or "zero"
    if cls == "EulerDiscreteScheduler":
        return SolverClaim("euler", order=1, final=final)
    if cls == "HeunDiscreteScheduler":
        return SolverClaim("heun", order=2, count=lambda n: 2 * n - 1, interleaved=True)
    if cls == "EulerAncestralDiscreteScheduler":
        return SolverClaim("euler_ancestral", stochastic=True)
    if cls == "LMSDiscreteScheduler":
        return SolverClaim("lms", {"order": 4}, order=None)
    if cls == "FlowMatchEulerDiscreteScheduler":
        return SolverClaim("flow_euler", order=1,
                           levels=_flow_levels(cfg, (set_timesteps or {}).get("mu")))
    if cls == "DPMSolverMultistepScheduler":
        alg = cfg.algorithm_type
        order = int(cfg.solver_order)
        if alg.startswith("sde"):
            return SolverClaim("dpm_solver", {"order": order, "algorithm": "sde-dpmsolver++",
                                              "lower_order_final": bool(cfg.lower_order_final)},
                               stochastic=True, final=final)
        kw = {"order": order, "algorithm": alg, "lower_order_final": bool(cfg.lower_order_final),
              "solver_type": cfg.solver_type}
        variants = {}
        if order == 3:
            variants["third-order D₂ weighted by φ₃, half the Taylor weight (converges at "
                     "order 2)"] = ({**kw, "third_order": "diffusers"},
                                   "docs/FINDINGS.md §8; "
                                   "scheduling_dpmsolver_multistep.py:1114-1131")
        return SolverClaim("dpm_solver", kw, order=order, final=final, variants=variants)
    if cls == "UniPCMultistepScheduler":
        order = int(cfg.solver_order)
        corr = not cfg.disable_corrector
        kw = {"order": order, "variant": cfg.solver_type, "corrector": corr,
              "lower_order_final": bool(cfg.lower_order_final)}
        return SolverClaim("unipc", kw, order=order + (1 if corr else 0), final=final)
    if cls == "DPMSolverSinglestepScheduler":
        alg = cfg.algorithm_type
        if alg.startswith("sde"):  # no singlestep SDE reference in npddpm
            return SolverClaim(None, order=int(cfg.solver_order), final=final, stochastic=True)
        kw = {"method": "singlestep", "order": int(cfg.solver_order), "algorithm": alg,
              "solver_type": cfg.solver_type, "orders": "diffusers",
              "lower_order_final": bool(cfg.lower_order_final)}
        return SolverClaim("dpm_solver", kw, order=int(cfg.solver_order), final=final)
    if cls == "DEISMultistepScheduler":  # documented to end at t = 0, σ_min (no final σ = 0)
        kw = {"order": int(cfg.solver_order), "lower_order_final": bool(cfg.lower_order_final)}
        return SolverClaim("deis", kw, order=int(cfg.solver_order), final="sigma_min")
    return SolverClaim(None)
