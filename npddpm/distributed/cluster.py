"""Reaching a Dask cluster: :func:`connect` (``--dask ADDRESS`` / ``--dask local:N``) and the
client checks every entry point shares. Dask is imported here, and only when called."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["check_client", "connect", "workers"]

_INSTALL = "Dask is not installed: pip install 'npddpm[dask]'"


def check_client(client: Any) -> Any:
    """``client`` if it is a :class:`dask.distributed.Client`, else a TypeError naming it."""
    methods = (getattr(client, m, None) for m in ("submit", "scatter", "gather"))
    if not all(callable(m) for m in methods):
        raise TypeError(
            f"client must be a dask.distributed.Client, got {type(client).__name__}; create one "
            "with npddpm.distributed.connect('local:2') or dask.distributed.Client(address)"
        )
    return client


def workers(client: Any) -> int:
    """The number of workers the client's scheduler knows now (at least 1)."""
    info = check_client(client).scheduler_info()
    return max(1, len(info.get("workers", {})))


@contextlib.contextmanager
def connect(spec: str, *, timeout: float = 30.0) -> Iterator[Any]:
    """A :class:`dask.distributed.Client` for ``spec``, closed (with its cluster) on exit.

    ``spec`` is ``local:N`` (a :class:`~dask.distributed.LocalCluster` of N worker processes,
    one thread each, no dashboard) or a scheduler address such as ``tcp://host:8786``.

    Raises
    ------
    ValueError
        If ``spec`` is malformed, Dask is not installed, or the scheduler cannot be reached
        within ``timeout`` seconds.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dask: expected ADDRESS or local:N, got {spec!r}")
    spec = spec.strip()
    local = re.fullmatch(r"local:(\d+)", spec)
    if spec.startswith("local") and local is None:
        raise ValueError(f"dask: expected local:N with N ≥ 1 worker processes, got {spec!r}")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(_INSTALL) from None
    if local is not None:
        n = int(local.group(1))
        if n < 1:
            raise ValueError(f"dask: local:N needs N ≥ 1 worker processes, got {spec!r}")
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(spec, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(f"dask: cannot reach the scheduler at {spec} ({exc})") from None
    with client:
        yield client
