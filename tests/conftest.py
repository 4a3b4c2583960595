"""Shared fixtures: both backends (compiled core and its twin), hypothesis profiles."""

import os

import pytest
from hypothesis import HealthCheck, settings

from .support.backends import BACKENDS
from .support.backends import cext as _cext

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=BACKENDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def core(request):
    """Each test using `core` runs once per backend."""
    return request.param


@pytest.fixture
def cext():
    if _cext is None:
        pytest.skip("compiled core not built")
    return _cext
