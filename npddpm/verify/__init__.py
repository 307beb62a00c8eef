r"""The verification suite behind ``npddpm verify``: npddpm's samplers against the analytic
oracle. :mod:`.suite` has the moment and chain rows (and the table), :mod:`.score` the
score-based samplers' rows, :mod:`.solvers` the ODE/SDE solvers' rows, :mod:`.common` the
statistics they share.
"""

from .common import ALPHA, Row, directions, mean_chi2_pvalue, mixture_2d, projection_ks_pvalues
from .score import ALPHA_SCORE, score_rows
from .solvers import ORDER_CASES, solver_rows
from .suite import LEGEND, chain_rows, format_table, moment_rows, run_verification

__all__ = [
    "ALPHA",
    "ALPHA_SCORE",
    "LEGEND",
    "ORDER_CASES",
    "Row",
    "chain_rows",
    "directions",
    "format_table",
    "mean_chi2_pvalue",
    "mixture_2d",
    "moment_rows",
    "projection_ks_pvalues",
    "run_verification",
    "score_rows",
    "solver_rows",
]
