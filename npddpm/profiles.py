"""Implementation profiles: every place where public DDPM implementations disagree,
as a named option, and the bundles of choices each implementation makes.

Sources are cited as ``file:line`` of these upstream snapshots: improved-diffusion
``1bc7bbbd``, TF DDPM ``1e0dceb3``, diffusers ``58eb52c0``, lucidrains ``faed4db2``.

=====================  ==================================================================
option                 values (first = improved-diffusion)
=====================  ==================================================================
``t0_log_variance``    ``"posterior_variance_1"``: log β̃ at t = 0 is replaced by log β̃₁
                       (ID ``gaussian_diffusion.py:159-161``, TF2 ``:79``);
                       ``"floor"``: ``log(max(β̃, 1e-20))`` = −46.05 at t = 0
                       (TF1 ``diffusion_utils.py:82``, diffusers ``ddpm.py:391``, lucidrains
                       ``ddp.py:566``). Affects the fixed_small log-variance, the lower end of
                       learned_range, and so the decoder NLL; never sampling (noise is
                       masked at t = 0).
``fixed_large_t0``     ``"posterior_variance_1"``: variance and log-variance
                       ``[β̃₁, β₁, β₂, …]`` (ID ``:281-284``); ``"tf"``: variance β, log-variance
                       ``log [β̃₁, β₁, …]`` (TF2 ``diffusion_utils_2.py:142``); ``"beta"``:
                       variance and log-variance β (diffusers ``current_beta_t``).
``learned_output``     ``"log_variance"``: the model's variance channels are log σ² (ID
                       ``:265-267``); ``"variance"``: they are σ² (diffusers ``ddpm.py:408``).
``hybrid_vb_scale``    ``"full_bound"``: the hybrid loss adds the per-step VLB term × T/1000,
                       i.e. λ = 0.001 on the full bound (ID ``:729-732``); ``"per_step"``:
                       × 0.001 on the per-step term (lucidrains
                       ``learned_gaussian_diffusion.py:158``).
``ddim_rederive_eps``  ``True``: DDIM re-derives ε̂ from the clipped x̂₀ (ID ``:504``, lucidrains
                       ``ddp.py:717``); ``False``: uses the model's ε (diffusers default
                       ``use_clipped_model_output=False``, ``ddim.py:483-485``).
``last_step_noise``    ``"index"``: no noise when the index t is 0 (ID ``:383-386``, TF ``:195``);
                       ``"timestep"``: no noise when the *original* timestep is 0 (diffusers
                       ``ddpm.py:543``) — differs under respacing that skips timestep 0.
``xstart_from_eps``    ``"recip"``: x̂₀ = √(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε (ID, TF, lucidrains);
                       ``"divide"``: x̂₀ = (x_t − √(1 − ᾱ)·ε)/√ᾱ (diffusers ``ddpm.py:513``).
                       Equal in exact arithmetic; they round differently.
``cdf``                ``"tanh"``: the tanh approximation of Φ used by every reference
                       (ID ``losses.py:37-43``, max error 1.8e-4); ``"erf"``: the exact Φ.
``arithmetic``         ``"float64"``: every coefficient gathered and applied in float64, the
                       result cast to the input dtype (npddpm's reference arithmetic);
                       ``"input_dtype"``: each gathered coefficient is cast to the input's
                       dtype and the arithmetic runs in that dtype (ID ``_extract_into_tensor``
                       ``:838`` for float32 inputs; the kernels' arithmetic).
=====================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["PROFILES", "Profile", "get_profile"]

_CHOICES: dict[str, tuple] = {
    "t0_log_variance": ("posterior_variance_1", "floor"),
    "fixed_large_t0": ("posterior_variance_1", "tf", "beta"),
    "learned_output": ("log_variance", "variance"),
    "hybrid_vb_scale": ("full_bound", "per_step"),
    "ddim_rederive_eps": (True, False),
    "last_step_noise": ("index", "timestep"),
    "xstart_from_eps": ("recip", "divide"),
    "cdf": ("tanh", "erf"),
    "arithmetic": ("float64", "input_dtype"),
}


@dataclass(frozen=True)
class Profile:
    """One implementation's choices (see the module docstring for every option)."""

    name: str = "improved_diffusion"
    t0_log_variance: str = "posterior_variance_1"
    fixed_large_t0: str = "posterior_variance_1"
    learned_output: str = "log_variance"
    hybrid_vb_scale: str = "full_bound"
    ddim_rederive_eps: bool = True
    last_step_noise: str = "index"
    xstart_from_eps: str = "recip"
    cdf: str = "tanh"
    arithmetic: str = "float64"

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            allowed = _CHOICES[f.name]
            if value not in allowed or type(value) is not type(allowed[0]):
                raise ValueError(
                    f"profile option {f.name}={value!r} is not one of "
                    f"{', '.join(repr(a) for a in allowed)}"
                )

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with some options replaced (its name gets a ``+`` suffix)."""
        unknown = set(overrides) - set(_CHOICES)
        if unknown:
            raise ValueError(
                f"unknown profile option(s) {sorted(unknown)}; known: {', '.join(_CHOICES)}"
            )
        if not overrides:
            return self
        return replace(self, name=self.name + "+", **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Every field of the profile as ``{name: value}``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


PROFILES: dict[str, Profile] = {
    "improved_diffusion": Profile(),
    # TF2 diffusion_utils_2.py (run_cifar.py): ID's arrays, TF's fixedlarge, no hybrid loss.
    "original_tf": Profile(name="original_tf", fixed_large_t0="tf"),
    "diffusers": Profile(
        name="diffusers",
        t0_log_variance="floor",
        fixed_large_t0="beta",
        learned_output="variance",
        ddim_rederive_eps=False,
        last_step_noise="timestep",
        xstart_from_eps="divide",
    ),
    "lucidrains": Profile(name="lucidrains", t0_log_variance="floor", hybrid_vb_scale="per_step"),
}


def get_profile(profile: str | Profile, **overrides: Any) -> Profile:
    """Look up a profile by name (or pass one through) and apply overrides."""
    if isinstance(profile, Profile):
        return profile.with_overrides(**overrides)
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    return PROFILES[profile].with_overrides(**overrides)
