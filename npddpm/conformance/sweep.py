"""Conformance sweeps: many diffusers scheduler configurations, one :class:`Report` each, in
this process or on a Dask client (one task per configuration).

A configuration is ``("step", class name, options, inference steps or None)`` for the
DDPM/DDIM step checks (:func:`npddpm.conformance.check` through a
:class:`DiffusersAdapter`) or ``("solver", class name, options, None)`` for the ODE/SDE solver
checks (:func:`npddpm.conformance.check_solver`; the option ``set_timesteps``, a dict, holds
extra ``set_timesteps`` arguments such as ``mu``). Every check uses fixed seeds, so a report is
the same bitwise wherever it is computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from .checker import check
from .diffusers_adapter import DiffusersAdapter
from .report import Report
from .solver_adapters import DiffusersSolverAdapter
from .solver_check import check_solver

__all__ = ["DIFFUSERS_T", "check_config", "config_name", "sweep"]

#: ``num_train_timesteps`` of the step-check schedulers.
DIFFUSERS_T = 1000

Config = tuple[str, str, dict[str, Any], "int | None"]


def config_name(config: Config) -> str:
    """``diffusers Class(k=v, …)[, N steps]``: how reports and summaries name a configuration."""
    kind, cls, kw, steps = config
    name = f"diffusers {cls}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
    return name + (f", {steps} steps" if steps and kind == "step" else "")


def check_config(config: Config) -> Report:
    """The report of one configuration (see the module docstring).

    Raises
    ------
    ValueError
        If diffusers is not installed, or refuses the configuration (the message names it).
    """
    kind, cls, kw, steps = config
    if kind not in ("step", "solver"):
        raise ValueError(f"a configuration's kind must be 'step' or 'solver', got {kind!r}")
    try:
        import diffusers
    except ImportError:
        raise ValueError("diffusers is not installed: pip install 'npddpm[conform]'") from None
    name = config_name(config)
    try:
        if kind == "solver":
            opts = dict(kw)
            extra = opts.pop("set_timesteps", None)  # e.g. {"mu": …} for dynamic shifting
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return check_solver(DiffusersSolverAdapter(cls, opts, set_timesteps=extra))
        sched = getattr(diffusers, cls)(num_train_timesteps=DIFFUSERS_T, **kw)
    except (TypeError, ValueError, NotImplementedError, AttributeError) as exc:
        raise ValueError(f"{name}: diffusers refused the configuration ({exc})") from None
    return check(DiffusersAdapter(sched, num_inference_steps=steps, name=name))


def _task(_: Any, config: Config) -> Report:
    return check_config(config)


def sweep(
    configs: Sequence[Config], *, client: Any = None, progress: bool | None = False
) -> list[Report]:
    """The reports of ``configs``, in their order (:func:`check_config` each).

    ``client``: a :class:`dask.distributed.Client`; each configuration is then one task on
    its workers (:func:`npddpm.distributed.map_items`; the workers need diffusers too), and
    the reports are those of the single-process sweep. ``progress``: a tqdm bar over the
    configurations (None: when stderr is a terminal)."""
    configs = list(configs)
    if client is not None:
        from ..distributed import map_items

        return map_items(client, _task, configs, progress=progress, name="conform")
    from .._progress import bar

    reports = []
    with bar(len(configs), "conform", progress, unit="config") as pbar:
        for config in configs:
            reports.append(check_config(config))
            pbar.update(1)
    return reports
