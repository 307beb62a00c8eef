"""npddpm: a float64 NumPy reference implementation of DDPM, verified against closed forms.

Public names are imported lazily where they would pull in heavy modules, so that
``import npddpm`` compiles nothing.
"""

from .diffusion import GaussianDiffusion
from .schedules import Schedule

__version__ = "0.1.0"

__all__ = ["GaussianDiffusion", "Schedule", "__version__"]
