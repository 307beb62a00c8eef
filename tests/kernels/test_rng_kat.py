"""Philox4x32 against the published known-answer vectors, and npddpm's counter layout.

The vectors are the ``philox4x32`` rows of ``kat_vectors`` in the Random123 distribution
(D. E. Shaw Research, https://github.com/DEShawResearch/random123, file ``tests/kat_vectors``,
commit 9545ff6413f258be2f04c1d319d99aaef7521150). Columns: name, rounds, counter (4 words),
key (2 words), expected output (4 words), all hex uint32.
"""

import numpy as np
import pytest

from npddpm import rng

KAT_VECTORS = """
philox4x32 7 00000000 00000000 00000000 00000000 00000000 00000000   5f6fb709 0d893f64 4f121f81 4f730a48
philox4x32 7 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   5207ddc2 45165e59 4d8ee751 8c52f662
philox4x32 7 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   4dfccaba 190a87f0 c47362ba b6b5242a
philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
"""  # noqa: E501


def _rows():
    for line in KAT_VECTORS.strip().splitlines():
        name, rounds, *words = line.split()
        w = [int(x, 16) for x in words]
        yield pytest.param(int(rounds), w[:4], w[4:6], w[6:], id=f"{name}-{rounds}-{words[0]}")


@pytest.mark.parametrize(("rounds", "counter", "key", "expected"), list(_rows()))
def test_philox_known_answers(rounds, counter, key, expected):
    out = rng.philox4x32(np.array(counter, np.uint32), np.array(key, np.uint32), rounds)
    assert out.dtype == np.uint32
    assert out.tolist() == expected


def test_philox_batched_equals_rowwise():
    rows = list(_rows())
    ten = [r.values for r in rows if r.values[0] == 10]
    counters = np.array([c for _, c, _, _ in ten], np.uint32)
    keys = np.array([k for _, _, k, _ in ten], np.uint32)
    out = rng.philox4x32(counters, keys)
    assert out.tolist() == [e for _, _, _, e in ten]


def test_counter_layout():
    """word(i) = philox(counter=(i//4 lo, i//4 hi, stream lo, stream hi), key=(seed lo, hi))."""
    seed, stream = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    index = np.array([0, 1, 2, 3, 4, 7, 2**34 + 5])
    words = rng.random_words(seed, stream, index)
    for i, w in zip(index.tolist(), words.tolist(), strict=True):
        q = i // 4
        ctr = [q & 0xFFFFFFFF, q >> 32, stream & 0xFFFFFFFF, stream >> 32]
        block = rng.philox4x32(np.array(ctr, np.uint64), [seed & 0xFFFFFFFF, seed >> 32])
        assert w == block[i % 4]


def test_normals_are_box_muller_of_the_words():
    n = 64
    words = rng.random_words(3, 5, np.arange(n)).reshape(-1, 2)
    for dt in (np.float32, np.float64):
        z = rng.standard_normal(3, 5, n, dt).reshape(-1, 2)
        c, s = rng.box_muller(words[:, 0], words[:, 1], dt)
        np.testing.assert_array_equal(z[:, 0], c)
        np.testing.assert_array_equal(z[:, 1], s)
        u, v = rng.uniforms(words[:, 0], words[:, 1], dt)
        assert np.all((u > 0) & (u < 1) & (v >= 0) & (v < 1))
        r = np.sqrt(-2 * np.log(u))
        tol = 4 * np.finfo(dt).eps * np.maximum(1, np.abs(z[:, 0]))
        assert np.all(np.abs(z[:, 0] - r * np.cos(2 * np.pi * v)) <= tol + 1e-15)
        assert np.all(np.abs(z[:, 1] - r * np.sin(2 * np.pi * v)) <= tol + 1e-15)


@pytest.mark.parametrize("start", [0, 1, 2, 3, 5, 4099])
def test_standard_normal_is_a_function_of_the_index(start):
    full = rng.standard_normal(11, 2, start + 37)
    part = rng.standard_normal(11, 2, 37, start=start)
    np.testing.assert_array_equal(part, full[start:])
    np.testing.assert_array_equal(rng.standard_normal(11, 2, (6, 4)).ravel(), full[:24])


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        rng.standard_normal(-1, 0, 3)
    with pytest.raises(ValueError, match="stream"):
        rng.standard_normal(0, 2**64, 3)
    with pytest.raises(TypeError, match="seed"):
        rng.standard_normal(1.5, 0, 3)
    with pytest.raises(TypeError, match="dtype"):
        rng.standard_normal(0, 0, 3, np.float16)
    with pytest.raises(ValueError, match="counter"):
        rng.philox4x32([1, 2, 3], [0, 0])
    with pytest.raises(ValueError, match="rounds"):
        rng.philox4x32([1, 2, 3, 4], [0, 0], rounds=0)
