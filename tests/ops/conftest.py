"""Fixtures for the RoI pooling op tests."""

import pytest

from keras_frcnn.ops import loader

IMPLEMENTATIONS = ("custom_op", "composite")


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request):
    """Runs a test once per implementation. The custom op must be built: a
    missing library fails here with the rebuild command, it is never skipped."""
    if request.param == "custom_op":
        loader.load()
    return request.param
