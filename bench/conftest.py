"""Benchmark fixtures: which devices to time, at which sizes, and how to time them.

Every case runs on each *speed device*: cpu, and each CUDA device CuPy can use. ``sim``
is never a speed device; ``--devices=sim`` runs every case once as a smoke check
(with ``--benchmark-disable``), which the test suite does.
"""
import pytest
from _timing import time_on

import xpnet as xn


def pytest_addoption(parser):
    parser.addoption("--size", default="quick", choices=["quick", "full"],
                     help="quick: about a minute on a 2-core CPU; full: up to n=8192 and 1 GB copies")
    parser.addoption("--devices", default="", help="comma-separated devices (default: cpu and every GPU)")


def _speed_devices(config):
    chosen = config.getoption("--devices")
    if chosen:
        return [xn.Device(d) for d in chosen.split(",")]
    return [d for d in xn.available_devices() if d.kind != "sim"]


def pytest_generate_tests(metafunc):
    if "speed_device" in metafunc.fixturenames:
        devices = _speed_devices(metafunc.config)
        metafunc.parametrize("speed_device", devices, ids=[d.name for d in devices])
    if "size" in metafunc.fixturenames and hasattr(metafunc.function, "sizes"):
        sizes = metafunc.function.sizes[metafunc.config.getoption("--size")]
        metafunc.parametrize("size", sizes, ids=[str(s) for s in sizes])


def sizes(quick, full):
    """Decorator: the sizes a case runs at in the quick and the full set."""
    def mark(fn):
        fn.sizes = {"quick": quick, "full": full}
        return fn
    return mark


@pytest.fixture
def timed(benchmark, speed_device):
    """``timed(case, fn, size, flop=..., nbytes=...)``: time fn on the speed device.

    Records the case, size, device and work in extra_info, which bench/report.py reads.
    """
    def run(case, fn, size, flop=None, nbytes=None, rounds=None, reference=None):
        benchmark.group = f"{case} {size}"
        benchmark.extra_info.update(case=case, size=size, device=speed_device.name,
                                    impl=reference or "xpnet", flop=flop, nbytes=nbytes)
        return time_on(benchmark, speed_device, fn, rounds=rounds)
    return run
