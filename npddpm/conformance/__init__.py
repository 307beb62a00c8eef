"""Validate other DDPM implementations against npddpm.

>>> from npddpm.conformance import CallablesAdapter, check   # doctest: +SKIP

See :func:`check`, the adapters in :mod:`npddpm.conformance.adapters`, and the test vectors in
:mod:`npddpm.conformance.vectors`.
"""

from .adapters import Adapter, CallablesAdapter, DiffusersAdapter, ImprovedDiffusionAdapter
from .check import DIAGNOSES, ConformanceError, Report, Row, assert_conforms, check

__all__ = [
    "DIAGNOSES",
    "Adapter",
    "CallablesAdapter",
    "ConformanceError",
    "DiffusersAdapter",
    "ImprovedDiffusionAdapter",
    "Report",
    "Row",
    "assert_conforms",
    "check",
]
