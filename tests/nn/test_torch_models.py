"""MLP and UNet rebuilt in PyTorch (tests/nn/torch_models.py) from npddpm's params give the
same outputs and gradients as npddpm's hand-written forward and backward passes.

Tolerances (norm-wise relative error, the issue's bounds): 1e-10 in float64, where both sides
compute the same sums in a different order (observed ~1e-15); 1e-5 in float32, where rounding
differences of ~6e-8 per operation accumulate through a few dozen layers and through
different summation orders in the convolutions (observed ≤ 3e-6).
"""

import numpy as np
import pytest

from npddpm.nn import MLP, UNet
from npddpm.testing.gradcheck import relative_error

torch = pytest.importorskip("torch")
from .torch_models import torch_mlp, torch_unet  # noqa: E402

pytestmark = pytest.mark.torch

TOL = {np.float64: 1e-10, np.float32: 1e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def compare(model, tmodel, x, t, rng, dtype):
    out, cache = model.forward(x, t)
    v = rng.standard_normal(out.shape).astype(dtype)
    grads = model.backward(v, cache)
    tout = tmodel(torch.from_numpy(x), torch.from_numpy(t))
    (tout * torch.from_numpy(v)).sum().backward()
    tgrads = tmodel.npddpm_grads()
    assert sorted(tgrads) == sorted(grads)
    errs = {"out": relative_error(out, tout.detach().numpy())}
    errs |= {k: relative_error(grads[k], tgrads[k]) for k in grads}
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL[dtype], (worst, errs[worst])


@pytest.mark.parametrize(
    "dtype, fused", [(np.float64, False), (np.float32, False), (np.float32, True)]
)
@pytest.mark.parametrize(
    "cfg, n",
    [
        (dict(dim=2, hidden=32, num_blocks=2, threads=1), 64),
        (dict(dim=2, hidden=32, num_blocks=2, threads=2), 2100),  # two data-parallel chunks
        (dict(dim=5, hidden=7, num_blocks=0, learn_sigma=True, time_embed_dim=9), 64),
    ],
)
def test_mlp_matches_torch(dtype, fused, cfg, n):
    rng = np.random.default_rng(0)
    model = MLP(**cfg, dtype=dtype, fused=fused, seed=3)
    x = rng.standard_normal((n, cfg["dim"])).astype(dtype)
    t = rng.integers(0, 4000, n)  # beyond 1000: the embedding tables grow on both sides
    compare(model, torch_mlp(model, TORCH_DTYPE[dtype]), x, t, rng, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "cfg, side, n",
    [
        (dict(channels=1), 8, 3),
        # Two data-parallel chunks; groups=4 keeps two channels per group (with one, a conv
        # bias before a group norm has an exactly zero gradient and only rounding is compared).
        (dict(channels=1, base_channels=8, groups=4, threads=2), 8, 17),
        (
            dict(
                channels=3,
                base_channels=8,
                channel_mult=(1, 2, 2),
                groups=4,
                heads=2,
                learn_sigma=True,
            ),
            16,
            3,
        ),
        (
            dict(channels=2, base_channels=8, num_res_blocks=2, groups=2, attention=False),
            4,
            3,
        ),
    ],
)
def test_unet_matches_torch(dtype, cfg, side, n):
    rng = np.random.default_rng(1)
    model = UNet(**cfg, dtype=dtype, seed=2)
    for p in model.params.values():  # move the norms off γ = 1, β = 0
        p += (0.1 * rng.standard_normal(p.shape)).astype(dtype)
    x = rng.standard_normal((n, cfg["channels"], side, side)).astype(dtype)
    t = rng.integers(0, 1000, n)
    compare(model, torch_unet(model, TORCH_DTYPE[dtype]), x, t, rng, dtype)
