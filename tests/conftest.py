"""The ``device`` fixture: every device-independent test runs on cpu, sim and cuda.

cuda is skipped, with CuPy's own reason, where no GPU can be used; the fixture (not the
tests) knows which devices exist. ``XPNET_DEVICE=cuda make test`` runs the same suite
with cuda as the process default too.

Tests that read MNIST are marked ``mnist`` (or use ``mnist_small``). Where
``XPNET_DATA_DIR`` is unset and the files are neither cached nor downloadable, they are
skipped with that reason; where it is set (as CI sets it), missing or damaged files
fail them, loudly.

The short test summary (``make test`` runs ``pytest -rs``) has one line per skip reason,
with its count, and a line of ``!`` when MNIST tests were skipped for want of the data.
"""
import functools
import inspect
import os

import numpy
import pytest

import xpnet as xn

# Skip reasons given here, with where (file, line) they are given: the short test summary
# names this place once for all the tests skipped for that reason (pytest_terminal_summary).
_SKIP_SOURCES = {}
MNIST_SKIPPED = "MNIST is not here and could not be downloaded"


def _device_params():
    yield pytest.param("cpu", id="cpu")
    yield pytest.param("sim", id="sim")
    why = xn.cuda_unavailable_reason()
    _SKIP_SOURCES[f"cuda: {why}"] = (__file__, inspect.currentframe().f_lineno + 1)  # the next line
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
        return f"{MNIST_SKIPPED}; set XPNET_DATA_DIR ({exc})"
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


def pytest_terminal_summary(terminalreporter):
    """Runs before pytest's short test summary (``-rs``): folds the skips so that it prints
    one line per reason (not 300 lines of "cuda: CuPy is not installed", one per test
    function), and says loudly when MNIST tests were skipped for want of the data."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and len(r.longrepr) == 3]
    fold_skips(skipped)
    mnist = sum(1 for r in skipped if str(r.longrepr[2]).removeprefix("Skipped: ").startswith(MNIST_SKIPPED))
    if mnist:
        terminalreporter.write_sep("!", f"{mnist} MNIST test{'s' if mnist > 1 else ''} SKIPPED: the MNIST files "
                                   f"are missing. Set XPNET_DATA_DIR to a folder with mnist/ in it (make test "
                                   f"uses ../shared/data), or let xpnet download them.", red=True, bold=True)


def fold_skips(reports):
    """Give every skip report of one reason the same place, so that pytest's summary counts
    them on one line: the place the reason is given where known (the device fixture's
    cuda), else their file when they share one, else their common folder."""
    by_reason = {}
    for report in reports:
        by_reason.setdefault(report.longrepr[2], []).append(report)
    for reason, group in by_reason.items():
        places = {(str(r.longrepr[0]), r.longrepr[1]) for r in group}
        if len(places) == 1:
            continue
        source = _SKIP_SOURCES.get(reason.removeprefix("Skipped: "))
        if source is None:
            files = {p for p, _ in places}
            source = (files.pop() if len(files) == 1 else os.path.commonpath(sorted(files)), None)
        for report in group:
            report.longrepr = (str(source[0]), source[1], reason)
