r"""The analytic oracle: Gaussian-mixture data, its exact noised marginals, the optimal
denoiser (:mod:`.mixture`), and the exact output moments of the samplers it drives
(:mod:`.moments`).
"""

from .flow import PathOracle, flow_map
from .mixture import GaussianMixture, OracleDenoiser
from .moments import SamplerMoments, sampler_affine_steps, sampler_moments, solver_moments

__all__ = [
    "GaussianMixture",
    "OracleDenoiser",
    "PathOracle",
    "SamplerMoments",
    "flow_map",
    "sampler_affine_steps",
    "sampler_moments",
    "solver_moments",
]
