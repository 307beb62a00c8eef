"""Sampling benchmark: DDPM ancestral sampling of 2-D points with an MLP denoiser.

npddpm (the float32 MLP's cache-free inference pass, ``MLP.predict``, + the fused ``cpu``
DDPM-step kernel with in-kernel noise) against the same MLP in PyTorch stepped by diffusers'
``DDPMScheduler``. Each side runs in its own subprocess (never two BLAS thread pools in one
process), the two alternate for ``--rounds`` rounds, and the ratio of the medians is printed.
Timing covers ``--steps`` reverse steps (per-step time is what is compared; a full run is
1000 steps).

    flock /tmp/npddpm-bench.lock python benchmarks/bench_sampling.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import run_worker  # noqa: E402


def worker_npddpm(cfg: dict) -> dict:
    import numpy as np

    from npddpm import GaussianDiffusion, Schedule, samplers
    from npddpm.nn import MLP

    model = MLP(2, hidden=cfg["width"], num_blocks=cfg["blocks"], seed=0)
    d = GaussianDiffusion(Schedule.from_name("linear", 1000))
    # the last `steps` reverse steps of a 1000-step chain: respace to keep the per-step cost
    d = GaussianDiffusion(d.schedule.respace(range(cfg["steps"])))

    def den(x, t):
        return model(x, t)  # the inference pass: no cache, timestep part of layer 1 hoisted

    x = np.random.default_rng(0).standard_normal((cfg["n"], 2)).astype(np.float32)
    samplers.ddpm(d, den, x[:64], seed=1, clip_denoised=False, backend="cpu")  # compile
    t0 = time.perf_counter()
    samplers.ddpm(d, den, x, seed=1, clip_denoised=False, backend="cpu")
    return {"seconds_per_step": (time.perf_counter() - t0) / cfg["steps"]}


def worker_torch(cfg: dict) -> dict:
    import numpy as np
    import torch
    from diffusers import DDPMScheduler

    sys.path.insert(0, str(ROOT / "tests" / "nn"))
    from torch_models import torch_mlp

    from npddpm.nn import MLP

    torch.set_num_threads(cfg["threads"])
    net = torch_mlp(
        MLP(2, hidden=cfg["width"], num_blocks=cfg["blocks"], seed=0), dtype=torch.float32
    )
    sched = DDPMScheduler(num_train_timesteps=1000)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((cfg["n"], 2)).astype("f4"))
    g = torch.Generator().manual_seed(1)
    steps = list(range(cfg["steps"]))[::-1]
    with torch.no_grad():
        for t in steps[:2]:  # warm-up
            sched.step(net(x[:64], torch.full((64,), t)), t, x[:64], generator=g)
        t0 = time.perf_counter()
        for t in steps:
            eps = net(x, torch.full((cfg["n"],), t))
            x = sched.step(eps, t, x, generator=g).prev_sample
    return {"seconds_per_step": (time.perf_counter() - t0) / cfg["steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker", choices=["npddpm", "torch"])
    ap.add_argument("--cfg")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.worker:
        cfg = json.loads(args.cfg)
        res = (worker_npddpm if args.worker == "npddpm" else worker_torch)(cfg)
        print(json.dumps(res))
        return
    cfg = {k: getattr(args, k) for k in ("n", "width", "blocks", "steps", "threads")}
    times: dict[str, list[float]] = {"npddpm": [], "torch": []}
    for _ in range(args.rounds):
        for kind in ("npddpm", "torch"):
            try:
                times[kind].append(run_worker(__file__, kind, cfg)["seconds_per_step"])
            except subprocess.CalledProcessError as exc:
                print(f"{kind} worker failed: {exc.stderr.strip().splitlines()[-1:]}")
                times[kind].append(float("nan"))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["torch"] / med["npddpm"]
    print(f"DDPM sampling, n={args.n} 2-D points, MLP width {args.width}, {args.threads} threads")
    for k, v in med.items():
        print(
            f"  {k:<8} {1e3 * v:8.2f} ms/step   (rounds: "
            f"{', '.join(f'{1e3 * x:.1f}' for x in times[k])})"
        )
    print(f"  speed-up of npddpm over torch+diffusers: {ratio:.2f}x")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"config": cfg, "times": times, "median": med, "speedup": ratio}, indent=1)
        )


if __name__ == "__main__":
    main()
