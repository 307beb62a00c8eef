"""``check_solver`` on k-diffusion 0.1.1's samplers (PyPI ``k-diffusion``, installed with
``--no-deps`` beside ``torchdiffeq``, ``torchsde`` and ``trampoline``): ``k_diffusion.sampling``
is loaded without the package's ``__init__`` (which needs scikit-image and torchvision, not
installed; torchvision is stubbed for ``k_diffusion.utils``' import).

In float64 k-diffusion's Euler, Heun, LMS, DPM-Solver++ 2M and 2S agree with npddpm's
references to ≤ 1e-14 on the same Karras levels. Its 3M SDE at η = 0 agrees with the φ₃
variant (docs/FINDINGS.md §8), and with one step it raises UnboundLocalError (§12)."""

import importlib.machinery
import importlib.util
import sys
import types

import pytest

from npddpm.conformance import KarrasLoopAdapter, SolverClaim, check_solver

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore")]
torch = pytest.importorskip("torch")
if importlib.util.find_spec("k_diffusion") is None:
    pytest.skip("k-diffusion is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def K():
    saved = {k: sys.modules.get(k) for k in (
        "torchvision", "torchvision.transforms", "torchvision.transforms.functional",
        "k_diffusion", "k_diffusion.sampling", "k_diffusion.utils")}
    if importlib.util.find_spec("torchvision") is None:
        tv, tvt, tvf = (types.ModuleType(n) for n in (
            "torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
        tv.transforms, tvt.functional = tvt, tvf
        for m in (tv, tvt, tvf):
            m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
            sys.modules[m.__name__] = m
    pytest.importorskip("torchsde")
    pytest.importorskip("torchdiffeq")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(importlib.util.find_spec("k_diffusion").submodule_search_locations)
    sys.modules["k_diffusion"] = pkg
    from k_diffusion import sampling

    yield sampling
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


def _sigmas(K):
    return lambda n: K.get_sigmas_karras(n, 0.002, 80.0, device="cpu")


@pytest.mark.parametrize(
    "name,claim,kw",
    [
        ("sample_euler", SolverClaim("euler", order=1), {}),
        ("sample_heun", SolverClaim("heun", order=2), {}),
        ("sample_lms", SolverClaim("lms", {"order": 4}), {}),
        ("sample_dpmpp_2m", SolverClaim("dpm_solver", {"order": 2}, order=2), {}),
        ("sample_dpmpp_2s_ancestral",
         SolverClaim("dpm_solver", {"order": 2, "method": "singlestep"}, order=2), {"eta": 0.0}),
    ],
)
def test_k_diffusion_samplers_agree_with_npddpm(K, name, claim, kw):
    r = check_solver(KarrasLoopAdapter(getattr(K, name), _sigmas(K), claim, disable=True, **kw),
                     n_max=30)
    assert r.conforms, r.table()
    assert all(row.max_abs <= 1e-13 for row in r.rows if row.quantity == "agreement"), r.table()


def test_k_diffusion_3m_is_the_phi3_variant_and_fails_at_one_step(K):
    kw = {"order": 3, "lower_order_final": False, "solver_type": "heun"}
    claim = SolverClaim("dpm_solver", kw, order=3, variants={
        "third-order D₂ weighted by φ₃": ({**kw, "third_order": "diffusers"}, "FINDINGS §8")})
    r = check_solver(KarrasLoopAdapter(K.sample_dpmpp_3m_sde, _sigmas(K), claim, disable=True,
                                       eta=0.0), n_max=4)
    agree = [row for row in r.rows if row.quantity == "agreement"]
    assert agree and all(row.diagnosis.startswith("third-order") for row in agree), r.table()
    assert all(row.worst_ratio >= 10 for row in agree), r.table()
    loop = next(row for row in r.failures if row.quantity == "contract: loop")
    assert loop.t_range == "N=1" and "UnboundLocalError" in loop.diagnosis, r.table()
