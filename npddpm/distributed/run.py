r"""Running work on a Dask client: shards of rows (:func:`map_shards`), independent items
(:func:`map_items`), and the samplers' ``client=`` (:func:`sample`).

Results come back in a fixed order (shard order, item order) whatever order the workers
finish in, and a task whose worker dies is rescheduled on another (Dask's
``allowed-failures``; :data:`DEFAULT_RETRIES` for exceptions); tasks are pure functions of
their inputs, so a recomputed shard gives the same bits.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._checks import sample_shape
from .cluster import check_client, workers
from .payload import pack, tune_worker_malloc, unpack

__all__ = ["DEFAULT_RETRIES", "concat", "map_items", "map_shards", "sample", "shards"]

#: Times a task is resubmitted after an exception raised in it (Dask's ``retries=``): none by
#: default, since the tasks are pure and an exception in one would recur (a bad argument
#: found after minutes of work would cost that three times). A task whose *worker* dies is
#: rescheduled by the scheduler itself (``distributed.scheduler.allowed-failures``, 3),
#: whatever this is — the case tested by killing a worker mid-run.
DEFAULT_RETRIES = 0

#: Shards per worker by default: enough to balance uneven workers, few enough that the
#: per-task overhead (milliseconds) stays small beside a shard's work.
SHARDS_PER_WORKER = 4


def shards(n: int, shard_size: int) -> list[tuple[int, int]]:
    """The row ranges ``[(0, s), (s, 2s), …, (ks, n)]`` of ``n`` rows in shards of
    ``shard_size`` (the last one shorter when ``shard_size`` does not divide ``n``)."""
    for value, name in ((n, "n"), (shard_size, "shard_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    n, s = int(n), int(shard_size)
    return [(a, min(a + s, n)) for a in range(0, n, s)]


def _default_shard_size(client: Any, n: int) -> int:
    return max(1, math.ceil(n / (SHARDS_PER_WORKER * workers(client))))


def _shard_task(
    fn: Callable[..., Any], digest: str, blob: bytes, a: int, b: int, args: tuple
) -> Any:
    tune_worker_malloc()
    return fn(unpack(digest, blob), a, b, *args)


def _item_task(fn: Callable[..., Any], digest: str, blob: bytes, item: Any) -> Any:
    tune_worker_malloc()
    return fn(unpack(digest, blob), item)


def _gather(client: Any, futures: list[Any], progress: bool | None, name: str) -> list[Any]:
    from dask.distributed import as_completed

    from .._progress import bar

    with bar(len(futures), name, progress, unit="shard") as pbar:
        for _ in as_completed(futures):
            pbar.update(1)
    return list(client.gather(futures))


def map_shards(
    client: Any,
    fn: Callable[..., Any],
    n: int,
    *,
    payload: Any = None,
    shard_size: int | None = None,
    args: tuple = (),
    retries: int = DEFAULT_RETRIES,
    progress: bool | None = False,
    name: str = "shards",
) -> list[Any]:
    """``[fn(payload, a, b, *args) for (a, b) in shards(n, shard_size)]``, on the workers.

    ``fn`` must be a module-level function (it travels by name); ``payload`` travels once per
    worker as :func:`pack` bytes (``client.scatter(broadcast=True)``) and is rebuilt once per
    worker process. ``shard_size`` defaults to n / (4 × workers), rounded up. Returns the
    results in shard order; :func:`concat` merges arrays.
    """
    check_client(client)
    size = _default_shard_size(client, n) if shard_size is None else shard_size
    bounds = shards(n, size)
    digest, blob = pack(payload, "payload")
    data = client.scatter(blob, broadcast=True, hash=False)
    futures = [
        client.submit(_shard_task, fn, digest, data, a, b, tuple(args), retries=retries, pure=False)
        for a, b in bounds
    ]
    return _gather(client, futures, progress, name)


def map_items(
    client: Any,
    fn: Callable[..., Any],
    items: Sequence[Any],
    *,
    payload: Any = None,
    retries: int = DEFAULT_RETRIES,
    progress: bool | None = False,
    name: str = "items",
) -> list[Any]:
    """``[fn(payload, item) for item in items]`` on the workers, in the order of ``items``
    (one task per item; ``payload`` as in :func:`map_shards`)."""
    check_client(client)
    digest, blob = pack(payload, "payload")
    data = client.scatter(blob, broadcast=True, hash=False)
    futures = [
        client.submit(_item_task, fn, digest, data, item, retries=retries, pure=False)
        for item in items
    ]
    return _gather(client, futures, progress, name)


def concat(results: Sequence[Any], axis: int = 0) -> Any:
    """Merge shard results: arrays along ``axis``; tuples and dicts element by element."""
    first = results[0]
    if isinstance(first, tuple):
        return tuple(concat([r[i] for r in results], axis) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: concat([r[k] for r in results], axis) for k in first}
    return np.concatenate([np.asarray(r) for r in results], axis=axis)


def _sample_shard(payload: tuple, a: int, b: int) -> Any:
    sampler, target, denoiser, x_T, tail, base, kwargs = payload
    rows = x_T[a:b] if x_T is not None else (b - a, *tail)
    return sampler(target, denoiser, rows, row_offset=base + a, **kwargs)


def sample(sampler: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """A sampler's ``client=`` path: ``sampler(**arguments)`` with its rows split into shards
    run on ``arguments["client"]``'s workers, merged in row order.

    ``arguments`` are the sampler's own parameters by name (the samplers pass
    ``dict(locals())``); shard ``[a, b)`` runs with ``row_offset = row_offset + a``, so the
    noise of each row is that of its global index and the result equals the single-process
    call bitwise for a batch-invariant denoiser (:func:`~npddpm.distributed.batch_invariant`).
    The denoiser and the diffusion travel by :func:`pack`. ``callback=`` and ``noise=`` cannot
    be used with a client (they live in this process), nor ``backend="cuda"`` (its in-kernel
    normals are not those of a shard's host-drawn noise).
    """
    kw = dict(arguments)
    names = list(inspect.signature(sampler).parameters)
    target, denoiser, x = (kw.pop(k) for k in names[:3])
    client = check_client(kw.pop("client"))
    shard_size = kw.pop("shard_size")
    base = kw.pop("row_offset")
    label = getattr(sampler, "__name__", "sampler")
    if kw.get("callback") is not None:
        raise ValueError(
            f"{label}: callback= cannot be used with client= (it would run on the workers); "
            "use return_trajectory=True, or run without a client"
        )
    if kw.get("noise") is not None:
        raise ValueError(
            f"{label}: noise= cannot be used with client=; the workers draw each row's noise "
            "from seed= by its global row index (the same noise as without a client)"
        )
    if kw.get("backend") == "cuda":
        raise ValueError(
            f"{label}: backend='cuda' draws its normals in-kernel (within a few ulp of the host "
            "generator), so shards would not match a single-process run; use backend='cpu' "
            "or 'numpy' with client="
        )
    progress = kw.pop("progress", False)
    if "progress" in names:
        kw["progress"] = False
    x_T: np.ndarray | None = None
    if isinstance(x, np.ndarray):
        if x.ndim < 2 or x.shape[0] < 1:
            raise ValueError(f"x_T must have shape (B, ...) with B ≥ 1, got {x.shape}")
        x_T, n, tail = x, x.shape[0], x.shape[1:]
    else:
        shape = sample_shape(x)
        n, tail = shape[0], shape[1:]
    payload = (sampler, target, denoiser, x_T, tail, int(base), kw)
    results = map_shards(
        client, _sample_shard, n, payload=payload, shard_size=shard_size, progress=progress,
        name=label,
    )
    if kw.get("return_trajectory"):
        return concat([r[0] for r in results]), concat([r[1] for r in results], axis=1)
    return concat(results)
