r"""The diagnoses that explain a mismatch, and the rule that lets one name a row.

A :class:`Diagnosis` is a change of the reference
(:class:`~npddpm.conformance.reference.RefConfig`): a documented divergence of one
implementation (``kind="known"``, with its source) or a named fault (``kind="fault"``).
:data:`DIAGNOSES` lists every one the checker tries.

The naming rule (a verdict is earned):

1. **Scope.** A diagnosis is tried on a row only when the row's quantity is one it is about
   (``quantities``: ``"q_sample"``, ``"ddpm.mean"``, ``"ddpm.noise"``, ``"ddpm.x0"``,
   ``"ddim.mean"``, ``"ddim.noise"``, ``"ddim.x0"``; ``"ddpm.step"``, the whole step of an
   implementation that draws its own noise, is about both the mean and the noise term),
   the implementation has the profile it belongs to (``profiles``) and, for a divergence
   about a precision, computes in that precision (``dtypes``: a float16 cast never
   explains a float32 row).
2. **No widened tolerance.** The diagnosed reference is compared with the row's own
   tolerance. A divergence about a lower precision brings the tolerance of that precision
   (``tolerance_dtype``), and only on rows whose implementation runs in it (rule 1).
3. **Discrimination.** The diagnosis names the row only if, under it, the row matches, and
   the discrepancy it predicts, δ = ref_D − ref, accounts for what was observed, got − ref:
   ``max|got − ref − δ| ≤ tol`` while ``max|got − ref| > tol`` — so δ has the observed
   size and sign at every element, to within the tolerance — and it removes at least half
   of the discrepancy (worst ratio under the diagnosis ≤ ½ of the claimed reference's), so
   a row failing by a hair, where the tolerance is wide, is not named by whatever else also
   fits in it. A diagnosis predicting δ = 0 (it does not touch this row) never names it.
4. **Choice.** Among single diagnoses that match, the one with the smallest residual names
   the row; pairs are tried only when no single one matches, and a pair is named only if
   neither half alone matches. Anything else is ``"unexplained"``: the row does not conform,
   and the report gives its largest discrepancy and where it is.

``tests/conformance/test_fault_bed.py`` checks the rule on every (fault, divergence) pair of
the fault bed: no fault is ever named as a known divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..schedules import Schedule, get_named_beta_schedule, schedule_names
from .reference import RefConfig, round_to
from .tolerances import table_tolerance

__all__ = ["DIAGNOSES", "QUANTITIES", "Diagnosis", "diagnose_schedule"]

Array = np.ndarray

QUANTITIES = (
    "q_sample",
    "ddpm.mean",
    "ddpm.noise",
    "ddpm.x0",
    "ddim.mean",
    "ddim.noise",
    "ddim.x0",
)
_X0 = frozenset({"ddpm.mean", "ddpm.x0", "ddim.mean", "ddim.noise", "ddim.x0"})


@dataclass(frozen=True)
class Diagnosis:
    """One explanation of a mismatch: a change of the reference that makes it conform.

    Attributes
    ----------
    name : str
    kind : {"known", "fault"}
    source : str
        Where it is documented.
    change : dict
        The :class:`RefConfig` fields it sets (``var_swap`` and ``clip_flip`` flip a field).
    quantities : frozenset of str
        The quantities it is about (:data:`QUANTITIES`).
    profiles : tuple of str, optional
        The implementation profiles it belongs to (None: any).
    exclude_profiles : tuple of str
        Profiles it never names (where the same change is that profile's documented choice).
    dtypes : tuple of str, optional
        The precisions of the implementation it applies to (None: any).
    tolerance_dtype : str, optional
        The precision of the diagnosed computation, when lower than the implementation's.
    when : (key, value), optional
        A divergence of one configured option: it applies only when the implementation's
        claimed config (``Adapter.config``) has ``key == value``.
    """

    name: str
    kind: str
    source: str
    change: dict = field(default_factory=dict)
    quantities: frozenset[str] = frozenset(QUANTITIES)
    profiles: tuple[str, ...] | None = None
    exclude_profiles: tuple[str, ...] = ()
    dtypes: tuple[str, ...] | None = None
    tolerance_dtype: str | None = None
    when: tuple[str, Any] | None = None

    def in_scope(self, quantity: str, profile: str, dtype: str, config: dict | None = None) -> bool:
        """True when this diagnosis may name a row of ``quantity`` for an implementation of
        ``profile`` computing in ``dtype`` (rule 1 of the module docstring)."""
        if quantity.endswith(".step"):  # a whole step with its noise: mean or noise term
            kind = quantity.split(".")[0]
            about = {f"{kind}.mean", f"{kind}.noise"} & self.quantities
        else:
            about = {quantity} & self.quantities
        return (
            bool(about)
            and (self.profiles is None or profile in self.profiles)
            and profile not in self.exclude_profiles
            and (self.dtypes is None or dtype in self.dtypes)
            and (self.when is None or (config or {}).get(self.when[0]) == self.when[1])
        )

    def apply(self, cfg: RefConfig) -> RefConfig | None:
        """``cfg`` with this diagnosis's change made; None when it changes nothing there
        (``var_swap`` on a learned variance, ``negate_output`` unless ``mean_type`` is v,
        an override already at that value)."""
        ch: dict[str, Any] = dict(self.change)
        if "var_swap" in ch:
            if cfg.var_type not in ("fixed_small", "fixed_large"):
                return None
            return replace(
                cfg, var_type="fixed_large" if cfg.var_type == "fixed_small" else "fixed_small"
            )
        if "clip_flip" in ch:
            return replace(cfg, clip=not cfg.clip, threshold=None)
        if "threshold_ignored" in ch:
            return replace(cfg, threshold=None, clip=True) if cfg.threshold else None
        if "final_alpha_flip" in ch:
            return replace(cfg, final_alpha="alpha0" if cfg.final_alpha == "one" else "one")
        if "negate_output" in ch and cfg.mean_type != "v":
            return None
        if "xstart_over_alpha" in ch and cfg.mean_type != "eps":
            return None
        if "overrides" in ch:
            old = dict(cfg.overrides)
            if all(old.get(k) == v for k, v in ch["overrides"].items()):
                return None
            return replace(cfg, overrides=tuple(sorted({**old, **ch["overrides"]}.items())))
        if all(getattr(cfg, k) == v for k, v in ch.items()):
            return None
        return replace(cfg, **ch)


_HF = ("diffusers",)

DIAGNOSES: tuple[Diagnosis, ...] = (
    # ---------------------------------------------------------------- known divergences
    Diagnosis(
        "add_noise runs in the sample dtype: float16 samples cast ᾱ to float16 too",
        "known",
        "huggingface/diffusers PR #3005",
        {"alpha_dtype": "float16"},
        quantities=frozenset({"q_sample"}),
        profiles=_HF,
        dtypes=("float16",),
        tolerance_dtype="float16",
    ),
    Diagnosis(
        "t = 0 log-variance floored at log 1e-20 instead of log β̃₁",
        "known",
        "diffusers ddpm.py:391; TF1 diffusion_utils.py:82; lucidrains ddp.py:566",
        {"overrides": {"t0_log_variance": "floor"}},
        quantities=frozenset({"ddpm.noise"}),
        profiles=("diffusers", "lucidrains", "original_tf"),
    ),
    Diagnosis(
        "last-step noise keyed on the timestep value, not the index",
        "known",
        "diffusers ddpm.py:543",
        {"overrides": {"last_step_noise": "timestep"}},
        quantities=frozenset({"ddpm.noise"}),
        profiles=_HF,
    ),
    Diagnosis(
        "DDIM ε not re-derived from the clipped x̂₀ (use_clipped_model_output=False)",
        "known",
        "diffusers ddim.py:483-485",
        {"overrides": {"ddim_rederive_eps": False}},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
        profiles=_HF,
    ),
    Diagnosis(
        "'learned' variance output read as σ², not log σ²",
        "known",
        "diffusers ddpm.py:408-409",
        {"overrides": {"learned_output": "variance"}},
        quantities=frozenset({"ddpm.noise"}),
        profiles=_HF,
    ),
    Diagnosis(
        "fixed_large uses β (not β̃₁) at t = 0",
        "known",
        "diffusers current_beta_t; improved-diffusion#45",
        {"overrides": {"fixed_large_t0": "beta"}},
        quantities=frozenset({"ddpm.noise"}),
        profiles=_HF,
    ),
    Diagnosis(
        "DDIM previous timestep taken as t − T//N, not the previous chain entry",
        "known",
        "diffusers ddim.py:445; huggingface/diffusers#12633, #11347",
        {"ddim_prev_by_stride": True},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
        profiles=_HF,
    ),
    Diagnosis(
        "DDIM direction coefficient √(1 − ᾱ_prev − σ²) not clamped: its float32 radicand "
        "rounds below 0 at ᾱ_t = 0 (zero terminal SNR) with η = 1, and the step is NaN",
        "known",
        "huggingface/diffusers#5969 (open)",
        {"ddim_direction_unclamped": True},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
        profiles=_HF,
    ),
    Diagnosis(
        "fixed_large_log: the std is taken as √(log β), which is NaN",
        "known",
        "huggingface/diffusers#14569 (open), PR #14571",
        {"std_of_log_beta": True},
        quantities=frozenset({"ddpm.noise"}),
        profiles=_HF,
        when=("variance_type", "fixed_large_log"),
    ),
    # ---------------------------------------------------------------- faults
    Diagnosis("off-by-one timestep (uses t+1)", "fault", "index convention", {"t_shift": 1}),
    Diagnosis("off-by-one timestep (uses t−1)", "fault", "index convention", {"t_shift": -1}),
    Diagnosis(
        "ᾱ cast to float16",
        "fault",
        "huggingface/diffusers PR #3005; AUTOMATIC1111/stable-diffusion-webui#14071",
        {"alpha_dtype": "float16"},
    ),
    Diagnosis("ᾱ cast to bfloat16", "fault", "bfloat16 tables", {"alpha_dtype": "bfloat16"}),
    Diagnosis(
        "q_sample without the square roots (ᾱ·x₀ + (1 − ᾱ)·ε)",
        "fault",
        "Ho et al. 2020 Eq. 4",
        {"q_no_sqrt": True},
        quantities=frozenset({"q_sample"}),
    ),
    Diagnosis(
        "q_sample noise term with the wrong sign",
        "fault",
        "Ho et al. 2020 Eq. 4",
        {"q_noise_sign": True},
        quantities=frozenset({"q_sample"}),
    ),
    Diagnosis(
        "β used where β̃ belongs (or β̃ where β belongs): fixed_small/fixed_large swapped",
        "fault",
        "Ho et al. 2020 §3.2",
        {"var_swap": True},
        quantities=frozenset({"ddpm.noise"}),
    ),
    Diagnosis(
        "σ² used as the standard deviation",
        "fault",
        "Ho et al. 2020 Algorithm 2",
        {"sigma_is_variance": True},
        quantities=frozenset({"ddpm.noise"}),
    ),
    Diagnosis(
        "x̂₀ clipping missing (or added)",
        "fault",
        "improved-diffusion clip_denoised; diffusers clip_sample",
        {"clip_flip": True},
        quantities=_X0,
    ),
    Diagnosis(
        "dynamic thresholding ignored (plain clipping instead)",
        "fault",
        "Saharia et al. 2022 §2.3; diffusers thresholding",
        {"threshold_ignored": True},
        quantities=_X0,
    ),
    Diagnosis(
        "wrong sign in the v-conversion",
        "fault",
        "Salimans & Ho 2022 §4",
        {"negate_output": True},
        quantities=_X0,
    ),
    Diagnosis(
        "x̂₀ divided by ᾱ instead of √ᾱ",
        "fault",
        "Ho et al. 2020 Eq. 15",
        {"xstart_over_alpha": True},
        quantities=_X0,
    ),
    Diagnosis(
        "posterior mean coefficients swapped (x̂₀'s on x_t and x_t's on x̂₀)",
        "fault",
        "Ho et al. 2020 Eq. 7",
        {"coef_swap": True},
        quantities=frozenset({"ddpm.mean"}),
    ),
    Diagnosis(
        "noise added at the last step",
        "fault",
        "Ho et al. 2020 Algorithm 2",
        {"force_last_noise": True},
        quantities=frozenset({"ddpm.noise"}),
    ),
    Diagnosis(
        "no noise at t = 1 (the last two steps are noiseless)",
        "fault",
        "Ho et al. 2020 Algorithm 2",
        {"no_noise_t1": True},
        quantities=frozenset({"ddpm.noise"}),
    ),
    Diagnosis(
        "DDIM direction term √(1 − ᾱ_prev − σ²)·ε̂ with the wrong sign",
        "fault",
        "Song et al. 2021 Eq. 12",
        {"ddim_direction_sign": True},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
    ),
    Diagnosis(
        "DDIM σ ignores η (always the η = 1 value)",
        "fault",
        "Song et al. 2021 Eq. 16",
        {"ddim_eta_ignored": True},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
    ),
    Diagnosis(
        "DDIM previous timestep taken as t − 1, not the previous chain entry",
        "fault",
        "Song et al. 2021 §4.2",
        {"ddim_prev_t_minus_1": True},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
    ),
    Diagnosis(
        "DDPM step ignores the respacing (previous timestep t − 1, the full schedule's β)",
        "fault",
        "improved-diffusion respace.py (SpacedDiffusion recomputes β)",
        {"ddim_prev_t_minus_1": True},
        quantities=frozenset({"ddpm.mean", "ddpm.noise", "ddpm.x0"}),
    ),
    Diagnosis(
        "DDIM ε not re-derived from the clipped x̂₀",
        "fault",
        "improved-diffusion gaussian_diffusion.py:504",
        {"overrides": {"ddim_rederive_eps": False}},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
        exclude_profiles=_HF,
    ),
    Diagnosis(
        "DDIM's final ᾱ contradicts the claimed set_alpha_to_one",
        "fault",
        "diffusers DDIMScheduler set_alpha_to_one",
        {"final_alpha_flip": True},
        quantities=frozenset({"ddim.mean", "ddim.noise"}),
    ),
)


# --------------------------------------------------------------------------- ᾱ table


def diagnose_schedule(
    got: Array, name: str, kw: dict, dtype: Any, *, rescale_zero_snr: bool = False
) -> str:
    """Name the construction error of an ᾱ table ``got`` (T,) that fails against the
    schedule ``name`` (with ``kw``), or ``"unexplained"``.

    Tried in order: ᾱ rounded to float16 or bfloat16; the ``linear`` schedule without
    improved-diffusion's 1000/T scaling (or with it); another named schedule; the cosine
    schedule without the square, or with another offset s (fitted); β floored at a constant
    (the smallest β of ``got``). Each must match at the table tolerance of ``dtype``.
    """
    from ..betas import rescale_zero_terminal_snr

    T = got.size
    tol = table_tolerance(np.arange(T), dtype)

    def table(betas: Array) -> Array:
        if rescale_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))

    def agree(ref: Array) -> bool:
        return bool(np.all(np.abs(got - ref) <= tol * np.maximum(ref, 1e-300)))

    try:
        ref = table(get_named_beta_schedule(name, T, **kw))
    except (ValueError, TypeError):
        return "unexplained"
    for dt in ("float16", "bfloat16"):
        if agree(round_to(ref, dt)):
            return f"ᾱ cast to {dt}"
    for other in schedule_names():
        if other == name:
            continue
        for okw in (kw, {}):
            try:
                alt = table(get_named_beta_schedule(other, T, **okw))
            except (ValueError, TypeError):
                continue
            if agree(alt):
                desc = {
                    "linear_unscaled": "unscaled linear schedule (TF/diffusers 'linear') "
                    "instead of improved-diffusion's 1000/T-scaled 'linear'",
                    "linear": "1000/T-scaled linear schedule instead of the unscaled one",
                }
                return desc.get(other, f"uses the {other!r} schedule")
    if name == "cosine":
        u = (np.arange(T + 1) / T + 0.008) / 1.008
        f = np.cos(u * np.pi / 2)
        if agree(table(np.minimum(1 - f[1:] / f[:-1], 0.999))):
            return "cosine schedule without the square (ᾱ ∝ cos, not cos²)"
        s = _fit_cosine_s(got)
        for digits in range(1, 7) if s is not None else ():
            s_r = float(f"{s:.{digits}g}")  # the offset as its author would have written it
            if agree(table(get_named_beta_schedule("cosine", T, s=s_r))):
                return f"cosine schedule with s = {s_r:g} (claimed {kw.get('s', 0.008):g})"
    prev = np.concatenate([[1.0], got[:-1]])
    b_got = 1 - got / prev
    floor = float(b_got.min())
    b_ref = get_named_beta_schedule(name, T, **kw)
    if floor > b_ref.min() and agree(table(np.maximum(b_ref, floor))):
        return f"β floored at {floor:.3g}"
    return "unexplained"


def _fit_cosine_s(got: Array) -> float | None:
    """The offset s of the cosine schedule whose ᾱ best fits ``got`` (least squares in
    log ᾱ over the first half of the table), or None."""
    from scipy.optimize import minimize_scalar

    T = got.size
    half = slice(0, T // 2)

    def loss(s: float) -> float:
        ab = Schedule(get_named_beta_schedule("cosine", T, s=s)).alphas_cumprod
        return float(np.sum((np.log(ab[half]) - np.log(got[half])) ** 2))

    res = minimize_scalar(loss, bounds=(1e-5, 0.2), method="bounded", options={"xatol": 1e-10})
    return float(res.x) if res.success else None
