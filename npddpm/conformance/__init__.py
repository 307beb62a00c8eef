"""Validate other DDPM implementations against npddpm.

>>> from npddpm.conformance import CallablesAdapter, check   # doctest: +SKIP

See :func:`check` (step by step, through an adapter: :mod:`npddpm.conformance.adapters`),
:func:`check_loop` (a whole sampling loop, black-box, by the law of its output),
:func:`check_solver` (an ODE/SDE solver scheduler: contract, agreement, measured order),
:func:`sweep` (many diffusers configurations, optionally on Dask), :func:`convergence_order`
and the test vectors in :mod:`npddpm.conformance.vectors`.
"""

from .adapters import Adapter, CallablesAdapter, ImprovedDiffusionAdapter
from .checker import assert_conforms, check
from .convergence import ConvergenceResult, convergence_order
from .diagnoses import DIAGNOSES, Diagnosis
from .diffusers_adapter import DiffusersAdapter
from .loop import LOOP_ALPHA, check_loop, default_loop_data
from .report import REPORT_VERSION, ConformanceError, Report, Row, write_reports
from .solver_adapters import (
    DiffusersSolverAdapter,
    KarrasLoopAdapter,
    SolverAdapter,
    SolverClaim,
    StepFunctionAdapter,
)
from .solver_check import check_solver
from .sweep import check_config, config_name, sweep

__all__ = [
    "DIAGNOSES",
    "LOOP_ALPHA",
    "REPORT_VERSION",
    "Adapter",
    "CallablesAdapter",
    "ConformanceError",
    "ConvergenceResult",
    "Diagnosis",
    "DiffusersAdapter",
    "DiffusersSolverAdapter",
    "ImprovedDiffusionAdapter",
    "KarrasLoopAdapter",
    "Report",
    "Row",
    "SolverAdapter",
    "SolverClaim",
    "StepFunctionAdapter",
    "assert_conforms",
    "check",
    "check_config",
    "check_loop",
    "check_solver",
    "config_name",
    "convergence_order",
    "default_loop_data",
    "sweep",
    "write_reports",
]
