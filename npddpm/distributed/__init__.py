r"""Past one machine: sharded sampling, verification and conformance sweeps on Dask.

The user brings a :class:`dask.distributed.Client` (or ``npddpm … --dask ADDRESS`` /
``--dask local:N`` on the command line) and npddpm splits the work into shards of rows
(:func:`shards`) or into independent items, broadcasts the inputs once, and merges the results
in a fixed order — the pattern of stumpy's ``stumped(client, …)``.

Bitwise the same as one process
-------------------------------
The normal for element ``i`` of step ``k`` under seed ``s`` is a pure function of
``(s, k, i)`` (:mod:`npddpm.rng`), and a shard of rows ``[a, b)`` draws the noise of those
global rows (``row_offset=a``, :func:`npddpm.samplers.step_noise`). So a sampler run with
``client=`` returns, bit for bit, what the same call without it returns — for any number of
workers, any shard size (also one that does not divide n), and after a worker is lost and its
shards are recomputed elsewhere — provided the denoiser is **batch-invariant**: row ``i`` of
``denoiser(x, t)`` depends on ``x[i]``, ``t[i]`` alone, bitwise. npddpm's MLP
(:meth:`npddpm.nn.MLP.predict`) and the analytic oracles are; :func:`batch_invariant` tests a
denoiser; the conv U-Net is not (its products depend on the batch size at the ulp level).

What travels
------------
Workers receive the model as bytes: :class:`CheckpointModel` carries a checkpoint file's bytes
and builds the model on the worker, once per process; an oracle denoiser travels as its arrays.
Everything is sent with the standard :mod:`pickle` (no cloudpickle), which refuses lambdas and
closures, and :func:`pack` also refuses compiled (Numba) functions: a worker compiles its own.

Dask is imported only when a client is used (extra ``npddpm[dask]``).
"""

from .cluster import connect, workers
from .payload import CheckpointModel, batch_invariant, pack, unpack
from .run import DEFAULT_RETRIES, concat, map_items, map_shards, sample, shards

__all__ = [
    "DEFAULT_RETRIES",
    "CheckpointModel",
    "batch_invariant",
    "concat",
    "connect",
    "map_items",
    "map_shards",
    "pack",
    "sample",
    "shards",
    "unpack",
    "workers",
]
