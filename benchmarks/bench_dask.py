"""Sharded sampling on Dask: one process against a LocalCluster of 1 and of 2 worker processes.

Two jobs: the Gaussian-mixture oracle (16-D, 4 components, DDPM on 100 respaced steps of the
linear schedule) and a trained-size MLP (width 256, 2 blocks, float32, sent as checkpoint
bytes) on 50 DDPM steps. Each round runs the sides in turn (one process, then the clusters in
alternating order), ``--rounds`` rounds, and reports the median wall time of each side and the
ratios; every sharded result is checked bitwise against the single-process one in the same
round. Cluster start-up (once per cluster) is reported apart. The single-process side runs in
this process with the machine's BLAS threads; each worker has one thread.

    flock /tmp/npddpm-bench.lock python benchmarks/bench_dask.py [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402


def _jobs(tmp: Path, n_oracle: int, n_mlp: int) -> dict:
    from npddpm.diffusion import GaussianDiffusion
    from npddpm.distributed import CheckpointModel
    from npddpm.io import save_checkpoint
    from npddpm.schedules import Schedule, space_timesteps
    from npddpm.training import TrainConfig, build_model
    from npddpm.verify.common import mixture_16d

    s = Schedule.from_name("linear", 1000).respace(space_timesteps(1000, "100"))
    d = GaussianDiffusion(s)
    oracle = mixture_16d().denoiser(d)
    # an untrained MLP of the default training width, written as a training checkpoint
    cfg = TrainConfig(num_timesteps=1000, model_options={"hidden": 256, "num_blocks": 2})
    model = build_model(cfg, (2,))
    arrays = {f"params/{k}": v for k, v in model.params.items()}
    arrays |= {f"ema/ema/{k}": v for k, v in model.params.items()}
    header = {"kind": "npddpm-train", "config": cfg.to_dict(), "example_shape": [2],
              "counters": {"ema/num_updates": 10**6}, "step": 0}  # fmt: skip
    path = save_checkpoint(tmp / "mlp.npz", arrays, header)
    mlp = CheckpointModel(path)
    dm = mlp.diffusion.respace(space_timesteps(1000, "50"))
    return {
        "oracle 16-D, 100 steps": (d, oracle, (n_oracle, 16)),
        "MLP w256 float32, 50 steps": (dm, mlp, (n_mlp, 2)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-oracle", type=int, default=20000)
    ap.add_argument("--n-mlp", type=int, default=200000)
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)

    from npddpm import samplers
    from npddpm.distributed import connect

    tmp = Path(tempfile.mkdtemp(prefix="npddpm-bench-dask-"))
    jobs = _jobs(tmp, args.n_oracle, args.n_mlp)
    times: dict[str, dict[str, list[float]]] = {j: {} for j in jobs}
    t0 = time.perf_counter()
    with connect("local:1") as c1, connect("local:2") as c2:
        startup = time.perf_counter() - t0
        c1.wait_for_workers(1)
        c2.wait_for_workers(2)
        clients = {"dask 1 worker": c1, "dask 2 workers": c2}
        for d, den, shape in jobs.values():
            for c in clients.values():  # warm-up: workers import npddpm, build the model
                samplers.ddpm(d, den, (64, *shape[1:]), client=c, clip_denoised=False)
            samplers.ddpm(d, den, (64, *shape[1:]), clip_denoised=False)
        for r in range(args.rounds):
            order = list(clients) if r % 2 == 0 else list(clients)[::-1]
            for name, (d, den, shape) in jobs.items():
                t = time.perf_counter()
                ref = samplers.ddpm(d, den, shape, seed=r, clip_denoised=False)
                times[name].setdefault("one process", []).append(time.perf_counter() - t)
                for side in order:
                    t = time.perf_counter()
                    got = samplers.ddpm(
                        d, den, shape, seed=r, clip_denoised=False, client=clients[side]
                    )
                    times[name].setdefault(side, []).append(time.perf_counter() - t)
                    if not np.array_equal(got, ref):
                        print(f"NOT BITWISE: {name}, {side}, round {r}", file=sys.stderr)
                        return 1
    out = {"rounds": args.rounds, "cluster_startup_s": startup, "jobs": {}}
    print(f"{'job':<28} {'side':<16} {'median s':>9} {'vs 1 worker':>12} {'vs 1 process':>13}")
    for name, sides in times.items():
        med = {k: statistics.median(v) for k, v in sides.items()}
        out["jobs"][name] = {"median_s": med, "times_s": sides}
        for side, m in med.items():
            print(
                f"{name:<28} {side:<16} {m:>9.2f} {med['dask 1 worker'] / m:>11.2f}× "
                f"{med['one process'] / m:>12.2f}×"
            )
    print(f"two LocalClusters started in {startup:.1f} s; every sharded result bitwise equal")
    if args.out:
        from npddpm.io import write_json

        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
