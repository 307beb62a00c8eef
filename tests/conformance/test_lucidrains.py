"""The real thing: lucidrains' ``denoising_diffusion_pytorch.GaussianDiffusion`` (2.3.4), its own
``p_sample_loop`` and ``ddim_sample`` with its own RNG, run on the analytic oracle through
:func:`npddpm.conformance.loop.check_loop` (no noise injected, nothing patched).

Classification (n = 10⁴, D = 4 as (1, 2, 2) images, seed 0, α = 1e-6):

==============================================  ====================================
configuration                                   verdict
==============================================  ====================================
sigmoid, pred_v (the defaults), DDPM 1000       conforms
sigmoid, pred_v, DDIM 250 steps, η = 0 and 1    conforms
linear, pred_noise, DDPM 1000 / DDIM 100        conforms
cosine, pred_x0, DDPM 1000; pred_noise DDIM 50  conforms
auto_normalize=True (output mapped 2y − 1)      conforms
DDIM 60 steps against the even spacing          chain FAIL: t=448 visited where the
                                                spacing −1 + iT/S gives 449 (and 248
                                                for 249): float32 linspace truncated
                                                by .int() (docs/FINDINGS.md); conforms
                                                to the chain it visits
==============================================  ====================================

lucidrains clamps x̂₀ to [−1, 1] inside both loops; the exact law assumes no clipping. With
this data (|μ| ≤ 0.1, λ ≤ 1e-3) the x̂₀ its loop computes from the oracle's output stays far
inside, which :func:`test_the_clamp_is_never_active` checks numerically.

Import: the package imports torchvision (``transforms``, ``utils``) at import time for its
Trainer and Dataset only. torchvision is a compiled package matched to a torch build and is
not installed with ``--no-deps`` here; when it is missing a stub module stands in for it
**while the package is imported** and is removed from ``sys.modules`` straight after, so no
other test sees it. Nothing the sampler runs touches torchvision.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _import_lucidrains():
    stubbed = []
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.utils = types.ModuleType("torchvision.utils")
        for name, mod in (
            ("torchvision", tv),
            ("torchvision.transforms", tv.transforms),
            ("torchvision.utils", tv.utils),
        ):
            sys.modules[name] = mod
            stubbed.append(name)
    try:
        return pytest.importorskip("denoising_diffusion_pytorch.denoising_diffusion_pytorch")
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)


ddp = _import_lucidrains()

from npddpm import GaussianDiffusion  # noqa: E402
from npddpm.conformance.loop import check_loop, default_loop_data  # noqa: E402
from npddpm.schedules import Schedule  # noqa: E402

pytestmark = pytest.mark.torch

T = 1000
SHAPE = (1, 2, 2)  # (C, H, W): D = 4
SCHEDULES = {
    "linear": ddp.linear_beta_schedule,
    "cosine": ddp.cosine_beta_schedule,
    "sigmoid": ddp.sigmoid_beta_schedule,
}
MEAN_TYPES = {"pred_noise": "eps", "pred_x0": "x0", "pred_v": "v"}


class OracleNet(torch.nn.Module):
    """lucidrains' model interface (``model(x, t, x_self_cond)``, ``channels``, ``out_dim``,
    ``self_condition``) around check_loop's oracle; records the largest |x̂₀| lucidrains'
    own formulas derive from its output (the value its loop clamps)."""

    def __init__(self):
        super().__init__()
        self.channels = self.out_dim = SHAPE[0]
        self.self_condition = False
        self.oracle = None
        self.gd = None
        self.max_x0 = 0.0

    def forward(self, x, t, x_self_cond=None):
        out = self.oracle(x, t)
        gd = self.gd
        if gd.objective == "pred_noise":
            x0 = gd.predict_start_from_noise(x, t, out)
        elif gd.objective == "pred_v":
            x0 = gd.predict_start_from_v(x, t, out)
        else:
            x0 = out
        self.max_x0 = max(self.max_x0, float(x0.abs().max()))
        return out


def lucidrains(schedule="sigmoid", objective="pred_v", steps=None, eta=0.0, normalize=False):
    net = OracleNet()
    gd = ddp.GaussianDiffusion(
        net,
        image_size=SHAPE[1:],
        timesteps=T,
        sampling_timesteps=steps,
        objective=objective,
        beta_schedule=schedule,
        ddim_sampling_eta=eta,
        auto_normalize=normalize,
    )
    net.gd = gd

    def sample_fn(model, shape, seed):
        net.oracle = model
        torch.manual_seed(seed)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # 4e4-element tensors: threads only contend on 2 cores
        try:
            out = gd.sample(batch_size=shape[0])
        finally:
            torch.set_num_threads(threads)
        return 2 * out - 1 if normalize else out  # undo unnormalize_to_zero_to_one

    return gd, net, sample_fn


def even_chain(steps):
    """The chain ddim_sample's comment describes: −1 + iT/S truncated, without −1."""
    ts = [math.trunc(-1 + i * T / steps) for i in range(steps + 1)]
    return sorted(t for t in ts if t >= 0)


def visited_chain(steps):
    """The chain ddim_sample actually walks (its own float32 linspace and .int())."""
    ts = torch.linspace(-1, T - 1, steps=steps + 1).int().tolist()
    return sorted(t for t in ts if t >= 0)


def claim(schedule, objective, chain=None):
    betas = SCHEDULES[schedule](T).numpy()  # lucidrains' float64 betas
    d = GaussianDiffusion(Schedule(betas), mean_type=MEAN_TYPES[objective], profile="lucidrains")
    return d if chain is None else d.respace(chain)


def check(schedule="sigmoid", objective="pred_v", steps=None, eta=0.0, normalize=False, chain=None):
    _, net, sample_fn = lucidrains(schedule, objective, steps, eta, normalize)
    sampler = "ddim" if steps is not None else "ddpm"
    chain = chain if chain is not None else (even_chain(steps) if steps else None)
    report = check_loop(
        sample_fn,
        claim(schedule, objective, chain),
        sampler=sampler,
        eta=eta,
        event_shape=SHAPE,
        framework="torch",
        name=f"lucidrains {schedule} {objective}",
    )
    return report, net


@pytest.mark.slow
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"steps": 250},
        {"steps": 250, "eta": 1.0},
        {"schedule": "linear", "objective": "pred_noise"},
        {"schedule": "linear", "objective": "pred_noise", "steps": 100},
        {"schedule": "cosine", "objective": "pred_x0"},
        {"schedule": "cosine", "objective": "pred_noise", "steps": 50},
        {"normalize": True, "steps": 100},
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults",
)
def test_lucidrains_sampler_conforms(kw):
    report, net = check(**kw)
    assert report.conforms, report.table()
    assert net.max_x0 < 1.0  # the clamp never acted: the exact (unclipped) law applies


def test_the_clamp_is_never_active():
    # the largest |x̂₀| lucidrains derives in its own loop, on the default data, is far below 1
    for objective in ("pred_noise", "pred_v"):
        _, net, sample_fn = lucidrains("cosine", objective, steps=50)
        check_loop(
            sample_fn,
            claim("cosine", objective, even_chain(50)),
            sampler="ddim",
            event_shape=SHAPE,
            framework="torch",
            n=2000,
        )
        assert net.max_x0 < 0.5, (objective, net.max_x0)
    data = default_loop_data(4)
    assert np.max(np.abs(data.means)) + 6 * math.sqrt(np.max(data.covariances)) < 0.5


@pytest.mark.slow
def test_ddim_chain_is_not_the_even_spacing_for_60_steps():
    report, _ = check(steps=60)
    chain = report.rows[0]
    assert chain.verdict == "FAIL"
    # descending from 999, its first visit off the even spacing is t=448 (for 449); the oracle
    # cannot answer off the claimed chain, so the loop stops there
    assert "called at t=448, not in the chain" in chain.diagnosis
    assert "visit 33 was t=448, the chain's step 33 is t=449" in chain.diagnosis
    assert report.rows[1].quantity == "loop" and "t=448" in report.rows[1].diagnosis
    # against the chain it visits, the sampler conforms
    report, _ = check(steps=60, chain=visited_chain(60))
    assert report.conforms, report.table()


@pytest.mark.slow
def test_faults_seeded_into_lucidrains_fail():
    # the oracle answering x̂₀ to a pred_v loop (a wrong claim), and a subclass whose p_sample
    # drops the noise at t = 1 as well as at t = 0. (ε answered to a pred_v loop passes: v → ε
    # as t → 0, so the mismatch lives at large t, which the chain forgets, and lucidrains'
    # clamp absorbs the x̂₀ of up to 5 it produces there; see loop.py's "cannot see".)
    _, _, sample_fn = lucidrains("linear", "pred_v")
    report = check_loop(sample_fn, claim("linear", "pred_x0"), event_shape=SHAPE, framework="torch")
    assert {r.quantity for r in report.failures} == {"output mean", "output variance"}

    class NoNoiseAtT1(ddp.GaussianDiffusion):
        @torch.inference_mode()
        def p_sample(self, x, t, x_self_cond=None):
            img, x_start = super().p_sample(x, t, x_self_cond)
            if t == 1:  # the mean alone: recompute without the noise
                bt = torch.full((x.shape[0],), t, dtype=torch.long)
                img = self.p_mean_variance(x=x, t=bt, clip_denoised=True)[0]
            return img, x_start

    net = OracleNet()
    gd = NoNoiseAtT1(
        net,
        image_size=SHAPE[1:],
        timesteps=T,
        objective="pred_noise",
        beta_schedule="linear",
        auto_normalize=False,
    )
    net.gd = gd

    def faulty(model, shape, seed):
        net.oracle = model
        torch.manual_seed(seed)
        return gd.sample(batch_size=shape[0])

    report = check_loop(faulty, claim("linear", "pred_noise"), event_shape=SHAPE, framework="torch")
    assert [r.quantity for r in report.failures] == ["output variance"], report.table()
