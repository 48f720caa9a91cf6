"""The ``device`` fixture: every device-independent test runs on cpu, sim and cuda.

cuda is skipped, with CuPy's own reason, where no GPU can be used; the fixture (not the
tests) knows which devices exist. ``XPNET_DEVICE=cuda make test`` runs the same suite
with cuda as the process default too.
"""
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


@pytest.fixture(scope="session")
def mnist_small():
    """5000 training and 1000 test images: enough to show learning in a second or two."""
    (x, t), (xt, tt) = xn.datasets.mnist()
    return (x[:5000], t[:5000]), (xt[:1000], tt[:1000])
