"""Fixtures shared by the metrics tests: the digits set and the trained digits classifier."""

import pytest

from npddpm import data
from npddpm import metrics as M


@pytest.fixture(scope="package")
def digits():
    return data.get("digits")


@pytest.fixture(scope="package")
def classifier():
    return M.digits_classifier()
