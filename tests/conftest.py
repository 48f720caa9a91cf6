"""The ``device`` fixture: every device-independent test runs on cpu, sim and cuda.

cuda is skipped, with CuPy's own reason, where no GPU can be used; the fixture (not the
tests) knows which devices exist. ``XPNET_DEVICE=cuda make test`` runs the same suite
with cuda as the process default too.

Tests that read MNIST are marked ``mnist`` (or use ``mnist_small``). Where
``XPNET_DATA_DIR`` is unset and the files are neither cached nor downloadable, they are
skipped with that reason; where it is set (as CI sets it), missing or damaged files
fail them, loudly.
"""
import functools
import os

import numpy
import pytest

import xpnet as xn


def _device_params():
    yield pytest.param("cpu", id="cpu")
    yield pytest.param("sim", id="sim")
    why = xn.cuda_unavailable_reason()
    yield pytest.param("cuda", id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(why is not None, reason=f"cuda: {why}")])


@pytest.fixture(params=list(_device_params()))
def device(request):
    with xn.use_device(request.param) as dev:
        yield dev


@pytest.fixture
def rng():
    return numpy.random.default_rng(1234)


@functools.lru_cache(maxsize=None)
def mnist_unavailable():
    """Why the MNIST tests cannot run here, or None when they can (or must)."""
    if os.environ.get("XPNET_DATA_DIR"):
        return None  # named explicitly: a missing or wrong file is a failure, not a skip
    try:
        xn.datasets.mnist()
    except FileNotFoundError as exc:
        return f"MNIST is not here and could not be downloaded; set XPNET_DATA_DIR ({exc})"
    return None


def pytest_runtest_setup(item):
    if item.get_closest_marker("mnist") is not None:
        why = mnist_unavailable()
        if why is not None:
            pytest.skip(why)


@pytest.fixture(scope="session")
def mnist_small():
    """5000 training and 1000 test images: enough to show learning in a second or two."""
    why = mnist_unavailable()
    if why is not None:
        pytest.skip(why)
    (x, t), (xt, tt) = xn.datasets.mnist()
    return (x[:5000], t[:5000]), (xt[:1000], tt[:1000])
