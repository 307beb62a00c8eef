"""Solver benchmark: 20-step sampling of 10,000 2-D points with an MLP model, per solver.

npddpm's solver (``npddpm.samplers``, float64 state, the float32 MLP's inference pass
``MLP.__call__``) against the same MLP rebuilt in PyTorch (float32) stepped by the matching
diffusers scheduler set to N = ``--steps`` steps. Both sides make the same number of model
calls, counted in each worker and checked here: N, Heun 2N − 1. npddpm's ``steps`` counts
the levels before its appended σ = 0 step (``final="zero"``), so N model calls are
``steps=N − 1``; the singlestep DPM-Solver is npddpm's 2S with N/2 two-stage steps ending at
``t_min`` (``final="min"``: 2 · N/2 calls) beside diffusers' singlestep order 2 with N.
Each side runs in its own subprocess (never two BLAS thread pools in one process), the
sides alternate for ``--rounds`` rounds, and the ratio of the medians is printed per solver.

    flock /tmp/npddpm-bench.lock python benchmarks/bench_solvers.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
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

#: solver label -> (npddpm call, diffusers scheduler and its options)
PAIRS: dict[str, tuple[tuple[str, dict], tuple[str, dict]]] = {
    "euler": (("euler", {}), ("EulerDiscreteScheduler", {})),
    "heun": (("heun", {}), ("HeunDiscreteScheduler", {})),
    "euler_ancestral": (("euler_ancestral", {}), ("EulerAncestralDiscreteScheduler", {})),
    "lms": (("lms", {}), ("LMSDiscreteScheduler", {})),
    "dpm++2M": (("dpm_solver", {"order": 2}), ("DPMSolverMultistepScheduler", {})),
    "dpm++2S": (
        ("dpm_solver", {"order": 2, "method": "singlestep", "final": "min"}),
        ("DPMSolverSinglestepScheduler", {"solver_order": 2}),
    ),
    "unipc": (("unipc", {}), ("UniPCMultistepScheduler", {})),
    "flow_euler": (("flow_euler", {}), ("FlowMatchEulerDiscreteScheduler", {})),
}


def worker_npddpm(cfg: dict) -> dict:
    import numpy as np

    from npddpm import Schedule, paths, samplers
    from npddpm.nn import MLP

    name, kw = PAIRS[cfg["solver"]][0]
    # N model calls: N/2 two-stage steps to t_min, or N − 1 levels and the step to σ = 0
    steps = cfg["steps"] // 2 if kw.get("final") == "min" else cfg["steps"] - 1
    model = MLP(2, hidden=cfg["width"], num_blocks=cfg["blocks"], seed=0)
    # the MLP embeds integer timesteps: round the path time (for flow, σ·1000 as diffusers)
    scale = 1000.0 if name == "flow_euler" else 1.0
    path = (
        paths.FlowMatching() if name == "flow_euler"
        else paths.DiscreteVP(Schedule.from_name("linear", 1000))
    )

    calls = [0]

    def den(x, t):
        calls[0] += 1
        return model(x, np.rint(scale * np.asarray(t)).astype(np.int64))
    solver = getattr(samplers, name)
    x = np.random.default_rng(0).standard_normal((cfg["n"], 2))
    solver(path, den, x[:64], steps=steps, **kw)  # warm-up
    calls[0] = 0
    t0 = time.perf_counter()
    solver(path, den, x, steps=steps, **kw)
    return {"seconds": time.perf_counter() - t0, "calls": calls[0]}


def worker_torch(cfg: dict) -> dict:
    import diffusers
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "nn"))
    from torch_models import torch_mlp

    from npddpm.nn import MLP

    torch.set_num_threads(cfg["threads"])
    net = torch_mlp(
        MLP(2, hidden=cfg["width"], num_blocks=cfg["blocks"], seed=0), dtype=torch.float32
    )
    cls_name, kw = PAIRS[cfg["solver"]][1]
    cls = getattr(diffusers, cls_name)
    kw = dict(kw) if cls_name.startswith("Flow") else {"num_train_timesteps": 1000, **kw}
    x0 = torch.from_numpy(np.random.default_rng(0).standard_normal((cfg["n"], 2)).astype("f4"))

    def loop(x):
        sched = cls(**kw)
        sched.set_timesteps(cfg["steps"])
        x = x * getattr(sched, "init_noise_sigma", 1.0)
        scale_in = getattr(sched, "scale_model_input", lambda x, t: x)
        g = torch.Generator().manual_seed(1)
        for t in sched.timesteps:
            tt = torch.full((x.shape[0],), round(float(t)), dtype=torch.long)
            out = net(scale_in(x, t), tt)
            step_kw = {"generator": g} if "Ancestral" in cls_name else {}
            x = sched.step(out, t, x, **step_kw).prev_sample
        return len(sched.timesteps)

    with torch.no_grad():
        loop(x0[:64])  # warm-up
        t0 = time.perf_counter()
        calls = loop(x0)
    return {"seconds": time.perf_counter() - t0, "calls": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker", choices=["npddpm", "torch"])
    ap.add_argument("--cfg")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--solvers", default=",".join(PAIRS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.worker:
        cfg = json.loads(args.cfg)
        print(json.dumps((worker_npddpm if args.worker == "npddpm" else worker_torch)(cfg)))
        return
    base = {k: getattr(args, k) for k in ("n", "width", "blocks", "steps", "threads")}
    report = {}
    print(f"{args.steps}-step sampling, n={args.n} 2-D points, MLP width {args.width}, "
          f"{args.threads} threads, median of {args.rounds} alternating rounds")
    print(f"  {'solver':<16} {'calls':>6} {'npddpm s':>9} {'torch s':>9} {'speed-up':>9}")
    for solver in args.solvers.split(","):
        cfg = {**base, "solver": solver}
        times: dict[str, list[float]] = {"npddpm": [], "torch": []}
        calls: dict[str, set[int]] = {"npddpm": set(), "torch": set()}
        for _ in range(args.rounds):
            for kind in ("npddpm", "torch"):
                try:
                    res = run_worker(__file__, kind, cfg)
                except subprocess.CalledProcessError as exc:
                    print(f"  {solver}: {kind} worker failed: {exc.stderr.strip()[-300:]}")
                    times[kind].append(float("nan"))
                    continue
                times[kind].append(res["seconds"])
                calls[kind].add(res["calls"])
        if len(calls["npddpm"] | calls["torch"]) > 1:
            sys.exit(f"{solver}: unequal model calls {calls} — the comparison would be unfair")
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["torch"] / med["npddpm"]
        nfe = min(calls["npddpm"] | calls["torch"], default=0)
        report[solver] = {"times": times, "median": med, "speedup": ratio, "calls": nfe}
        print(f"  {solver:<16} {nfe:>6} {med['npddpm']:>9.3f} {med['torch']:>9.3f} "
              f"{ratio:>8.2f}x")
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": base, "solvers": report}, indent=1))
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
