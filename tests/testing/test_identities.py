"""check_schedule_identities on a user's arrays: correct tables (npddpm's own, in float64 and
cast to or computed in float32; zero terminal SNR) hold at ≤ 1; each seeded fault fails one
identity with margin ≥ 10."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npddpm import Schedule
from npddpm.schedules import get_named_beta_schedule, rescale_zero_terminal_snr
from npddpm.testing import assert_schedule_identities, check_schedule_identities

TABLES = (
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def tables(s: Schedule, dtype=np.float64) -> dict:
    out = {n: getattr(s, n).astype(dtype) for n in TABLES}
    with np.errstate(divide="ignore"):  # σ_VE = ∞ at zero terminal SNR
        out["sigmas"] = np.sqrt(s.one_minus_alphas_cumprod / s.alphas_cumprod).astype(dtype)
    return out


def float32_tables(betas: np.ndarray) -> dict:
    """The tables as a float32 implementation computes them from its own float32 β."""
    f = np.float32
    b = betas.astype(f)
    ab = np.cumprod(f(1) - b, dtype=f)
    abp = np.concatenate([[f(1)], ab[:-1]])
    pv = b * (f(1) - abp) / (f(1) - ab)
    return dict(
        betas=b,
        alphas_cumprod=ab,
        sqrt_alphas_cumprod=np.sqrt(ab),
        sqrt_one_minus_alphas_cumprod=np.sqrt(f(1) - ab),
        sqrt_recip_alphas_cumprod=np.sqrt(f(1) / ab),
        sqrt_recipm1_alphas_cumprod=np.sqrt(f(1) / ab - f(1)),
        posterior_variance=pv,
        posterior_log_variance_clipped=np.log(np.concatenate([pv[1:2], pv[1:]])),
        posterior_mean_coef1=b * np.sqrt(abp) / (f(1) - ab),
        posterior_mean_coef2=(f(1) - abp) * np.sqrt(f(1) - b) / (f(1) - ab),
        sigmas=np.sqrt((f(1) - ab) / ab),
    )


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear", "sigmoid_beta"])
@pytest.mark.parametrize("T", [50, 1000])
def test_correct_tables_hold(name, T):
    s = Schedule(get_named_beta_schedule(name, T))
    chain = list(range(0, T, 10))
    r = s.respace(chain)
    rep = check_schedule_identities(
        betas=s.betas,
        alphas_cumprod=s.alphas_cumprod,
        timesteps=chain,
        respaced_betas=r.betas,
        **tables(s),
    )
    assert rep.ok, rep.table()
    assert max(row.worst_ratio for row in rep.rows) <= 1.0
    assert len(rep.rows) == 19
    rep32 = check_schedule_identities(**float32_tables(s.betas))
    assert rep32.ok and rep32.dtype == "float32", rep32.table()


def test_zero_terminal_snr_holds():
    s = Schedule(rescale_zero_terminal_snr(get_named_beta_schedule("linear", 1000)))
    assert s.alphas_cumprod[-1] == 0
    t = {k: v for k, v in tables(s).items() if k not in ("sqrt_recip_alphas_cumprod", "sigmas")}
    rep = assert_schedule_identities(betas=s.betas, alphas_cumprod=s.alphas_cumprod, **t)
    assert any(row.identity == "zero terminal SNR" for row in rep.rows)


def _fault(name: str):
    s = Schedule(get_named_beta_schedule("cosine", 1000))
    kw = {"betas": s.betas, "alphas_cumprod": s.alphas_cumprod, **tables(s)}
    ab = s.alphas_cumprod
    if name == "alphas_cumprod from another schedule":
        kw["alphas_cumprod"] = Schedule(get_named_beta_schedule("linear", 1000)).alphas_cumprod
    elif name == "alphas_cumprod not decreasing":
        a = ab.copy()
        a[500] = a[499]
        kw["alphas_cumprod"] = a
    elif name == "posterior_variance is beta":
        kw["posterior_variance"] = s.betas.copy()
    elif name == "posterior_variance off by one":
        kw["posterior_variance"] = np.append(s.posterior_variance[1:], s.posterior_variance[-1])
    elif name == "coefficients swapped":
        kw["posterior_mean_coef1"], kw["posterior_mean_coef2"] = (
            s.posterior_mean_coef2,
            s.posterior_mean_coef1,
        )
    elif name == "sqrt_recipm1 without the square root":
        kw["sqrt_recipm1_alphas_cumprod"] = 1 / ab - 1
    elif name == "sigmas as sqrt(1 - ab)/ab":
        kw["sigmas"] = np.sqrt(1 - ab) / ab
    elif name == "log variance not clipped at t = 0":
        with np.errstate(divide="ignore"):
            kw["posterior_log_variance_clipped"] = np.log(s.posterior_variance)
    elif name == "betas from float16":
        kw["betas"] = s.betas.astype(np.float16).astype(np.float64)
    return kw


FAULTS = {
    "alphas_cumprod from another schedule": "alphas_cumprod = cumprod",
    "alphas_cumprod not decreasing": "alphas_cumprod decreasing",
    "posterior_variance is beta": "posterior_variance",
    "posterior_variance off by one": "posterior_variance",
    "coefficients swapped": "posterior mean of x_0",
    "sqrt_recipm1 without the square root": "sqrt_recipm1_alphas_cumprod",
    "sigmas as sqrt(1 - ab)/ab": "sigmas",
    "log variance not clipped at t = 0": "posterior_log_variance_clipped",
    "betas from float16": "alphas_cumprod = cumprod",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_fails_its_identity_with_margin(fault):
    rep = check_schedule_identities(**_fault(fault))
    assert not rep.ok
    names = {row.identity: row.worst_ratio for row in rep.failures}
    assert FAULTS[fault] in names, rep.table()
    assert names[FAULTS[fault]] >= 10, rep.table()
    with pytest.raises(AssertionError, match=FAULTS[fault]):
        assert_schedule_identities(**_fault(fault))


@given(
    T=st.integers(20, 400),  # improved-diffusion's scaled linear needs T >= 20
    name=st.sampled_from(["linear", "cosine", "quadratic", "sigmoid_beta"]),
)
def test_every_named_schedule_holds(T, name):
    """The property form: npddpm's own schedule constructor, over T, satisfies every
    identity (what a user runs on their constructor)."""
    s = Schedule(get_named_beta_schedule(name, T))
    assert_schedule_identities(betas=s.betas, alphas_cumprod=s.alphas_cumprod, **tables(s))


def test_bad_input_is_a_clear_error():
    s = Schedule(get_named_beta_schedule("linear_unscaled", 10))
    with pytest.raises(TypeError, match="needs betas=, alphas_cumprod= or both"):
        check_schedule_identities()
    with pytest.raises(TypeError, match="unknown table"):
        check_schedule_identities(betas=s.betas, posterior_varaince=s.posterior_variance)
    with pytest.raises(TypeError, match="1-D float array"):
        check_schedule_identities(betas=[[0.1, 0.2]])
    with pytest.raises(ValueError, match="betas has 10 steps but alphas_cumprod has 9"):
        check_schedule_identities(betas=s.betas, alphas_cumprod=s.alphas_cumprod[:9])
    with pytest.raises(TypeError, match="needs respaced_betas"):
        check_schedule_identities(betas=s.betas, timesteps=[0, 5])


def test_schedule_constructor_property_passes_npddpm_and_shrinks_a_bug():
    from hypothesis import strategies as st

    from npddpm.testing import check_schedule_constructor

    check_schedule_constructor(
        lambda T, s: get_named_beta_schedule("cosine", T, s=s),
        T=(2, 2000),
        params={"s": st.floats(0.0, 0.1)},
        max_examples=30,
    )

    def buggy(T):  # β > 1 once T > 600: a clip written as max instead of min
        b = get_named_beta_schedule("linear_unscaled", T)
        return np.maximum(b, 1.5) if T > 600 else b

    with pytest.raises(AssertionError, match=r"constructor\(601\) breaks a schedule identity"):
        check_schedule_constructor(buggy, T=(2, 2000), max_examples=60)
    with pytest.raises(AssertionError, match=r"returned shape \(\d+,\), expected"):
        check_schedule_constructor(lambda T: np.full(T + 1, 0.01), T=(2, 50))
    with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
        check_schedule_constructor(lambda T: 1 / 0, T=(2, 50))
