"""npddpm: a float64 NumPy reference implementation of DDPM, verified against closed forms.

``import npddpm`` loads the float64 maths (:class:`Schedule`, :class:`GaussianDiffusion`)
and compiles nothing: Numba is imported on the first call of a ``cpu`` or ``cuda`` backend
or of a compiled model path. The subpackages (``npddpm.samplers``, ``npddpm.analytic``,
``npddpm.kernels``, ``npddpm.nn``, ``npddpm.data``, ``npddpm.metrics``, ``npddpm.verify``,
``npddpm.conformance``, ``npddpm.testing``) are imported by name; ``docs/architecture.md``
maps them.
"""

from .diffusion import GaussianDiffusion
from .schedules import Schedule

__version__ = "0.1.0"

__all__ = ["GaussianDiffusion", "Schedule", "__version__"]
