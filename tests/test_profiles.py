"""Implementation profiles (:mod:`npddpm.profiles`): every bundle holds valid choices, lookup
errors name the argument and list the choices, overrides, immutability, and the bundles
against the option table of the module docstring (parsed here, so the two cannot drift).

Deterministic: no random input.
"""

import dataclasses
import re

import pytest

from npddpm import profiles
from npddpm.profiles import PROFILES, Profile, get_profile

OPTIONS = [f.name for f in dataclasses.fields(Profile) if f.name != "name"]

# Which implementation tokens of the docstring's citations stand for which bundle ("TF" alone
# covers both TF releases; "TF1" is the first release, which no bundle follows).
CITES = {
    "improved_diffusion": r"\bID\b",
    "original_tf": r"\bTF2?\b",
    "diffusers": r"\bdiffusers\b",
    "lucidrains": r"\blucidrains\b",
}


def docstring_table() -> dict[str, list[tuple[object, str]]]:
    """{option: [(value, the text that describes and cites it), ...]} from the module
    docstring's table, in the table's order."""
    doc = profiles.__doc__
    rules = [m.start() for m in re.finditer(r"^=+ +=+$", doc, flags=re.M)]
    assert len(rules) == 3, "the docstring has one table: top rule, header rule, bottom rule"
    body = doc[doc.index("\n", rules[1]) + 1 : rules[2]]
    width = doc[rules[0] :].index(" ")  # the first column's width
    rows: dict[str, str] = {}
    current = None
    for line in body.splitlines():
        head, text = line[:width].strip(), line[width:].strip()
        if head:
            current = re.fullmatch(r"``(\w+)``", head).group(1)
            rows[current] = text
        else:
            rows[current] += " " + text
    table = {}
    for option, text in rows.items():
        parts = re.split(r'``("[^"`]+"|True|False)``:', text)
        assert parts[0].strip() == "", (option, parts[0])
        values = [eval(v) for v in parts[1::2]]  # string literals and booleans only
        table[option] = list(zip(values, parts[2::2], strict=True))
    return table


CHOICES = {option: tuple(v for v, _ in entries) for option, entries in docstring_table().items()}


def test_every_profile_holds_valid_choices():
    assert set(PROFILES) == {"improved_diffusion", "original_tf", "diffusers", "lucidrains"}
    for key, p in PROFILES.items():
        assert p.name == key
        for option in OPTIONS:
            value = getattr(p, option)
            assert value in CHOICES[option], (key, option, value)
            assert type(value) is type(CHOICES[option][0]), (key, option, value)


def test_documented_choices_are_exactly_the_accepted_ones():
    assert list(CHOICES) == OPTIONS  # the table lists every option, in the fields' order
    assert Profile() == PROFILES["improved_diffusion"]
    for option in OPTIONS:
        assert getattr(Profile(), option) == CHOICES[option][0]  # first = improved-diffusion
        for value in CHOICES[option]:
            assert getattr(Profile(**{option: value}), option) == value
        with pytest.raises(ValueError, match=f"profile option {option}="):
            Profile(**{option: "not-a-choice"})


@pytest.mark.parametrize("bad", ["tensorflow", "", "Diffusers", 3, None])
def test_get_profile_error_names_the_argument_and_lists_the_choices(bad):
    with pytest.raises(ValueError) as e:
        get_profile(bad)
    msg = str(e.value)
    assert msg.startswith(f"unknown profile {bad!r}")
    assert msg.endswith("known profiles: improved_diffusion, original_tf, diffusers, lucidrains")


def test_bad_option_value_names_the_option_and_lists_its_choices():
    with pytest.raises(ValueError, match=r"profile option cdf='exact' is not one of 'tanh', 'erf'"):
        Profile(cdf="exact")
    # booleans are not interchangeable with other values that compare equal
    with pytest.raises(ValueError, match=r"ddim_rederive_eps=1 is not one of True, False"):
        Profile(ddim_rederive_eps=1)
    with pytest.raises(ValueError, match=r"ddim_rederive_eps='True'"):
        get_profile("diffusers", ddim_rederive_eps="True")


def test_unknown_override_lists_the_known_options():
    with pytest.raises(ValueError) as e:
        get_profile("diffusers", clip=True, cdf="erf")
    msg = str(e.value)
    assert "unknown profile option(s) ['clip']" in msg
    assert msg.endswith("known: " + ", ".join(OPTIONS))


def test_overriding_an_option():
    base = PROFILES["diffusers"]
    p = get_profile("diffusers", cdf="erf", t0_log_variance="posterior_variance_1")
    assert p.name == "diffusers+" and p.cdf == "erf" and p.t0_log_variance == "posterior_variance_1"
    for option in OPTIONS:
        if option not in ("cdf", "t0_log_variance"):
            assert getattr(p, option) == getattr(base, option)
    assert base.cdf == "tanh" and base.name == "diffusers"  # the bundle is untouched
    assert get_profile(p, arithmetic="input_dtype").name == "diffusers++"
    # no overrides: the same object back, by name or passed through
    assert get_profile("lucidrains") is PROFILES["lucidrains"]
    assert get_profile(base) is base and base.with_overrides() is base
    assert p.to_dict() == {"name": "diffusers+", **{o: getattr(p, o) for o in OPTIONS}}


def test_profiles_are_immutable():
    p = PROFILES["improved_diffusion"]
    for option in ("name", *OPTIONS):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(p, option, getattr(p, option))
    d = p.to_dict()
    d["cdf"] = "erf"  # to_dict is a copy
    assert p.cdf == "tanh"
    assert hash(p) == hash(Profile())  # frozen dataclasses hash by value


# The arithmetic option is npddpm's own (float64 reference arithmetic for every bundle); its
# table row cites ID only to say where ID's float32 arithmetic lives.
NOT_A_BUNDLE_CHOICE = {"arithmetic"}


@pytest.mark.parametrize("key", list(CITES))
def test_bundles_follow_the_citations_in_the_docstring_table(key):
    """Each bundle takes, for every option, the value whose table entry cites that
    implementation, and the default (the first value) where its implementation is not cited."""
    p = PROFILES[key]
    for option, entries in docstring_table().items():
        if option in NOT_A_BUNDLE_CHOICE:
            assert getattr(p, option) == "float64"
            continue
        cited = [v for v, text in entries if re.search(CITES[key], text)]
        assert len(cited) <= 1, (key, option, cited)
        want = cited[0] if cited else entries[0][0]
        assert getattr(p, option) == want, (key, option, getattr(p, option), want)
