"""Validate other DDPM implementations against npddpm.

>>> from npddpm.conformance import CallablesAdapter, check   # doctest: +SKIP

See :func:`check`, the adapters in :mod:`npddpm.conformance.adapters`, and the test vectors in
:mod:`npddpm.conformance.vectors`.
"""

from .adapters import Adapter, CallablesAdapter, ImprovedDiffusionAdapter
from .checker import assert_conforms, check
from .diagnoses import DIAGNOSES, Diagnosis
from .diffusers_adapter import DiffusersAdapter
from .report import ConformanceError, Report, Row

__all__ = [
    "DIAGNOSES",
    "Adapter",
    "CallablesAdapter",
    "ConformanceError",
    "Diagnosis",
    "DiffusersAdapter",
    "ImprovedDiffusionAdapter",
    "Report",
    "Row",
    "assert_conforms",
    "check",
]
