"""Benchmark fixtures: which devices to time, at which sizes, and how to time them.

Every case runs on each *speed device*: cpu, and each CUDA device CuPy can use. ``sim``
is never a speed device; ``--devices=sim`` runs every case once as a smoke check
(with ``--benchmark-disable``), which the test suite does.

A case that takes the ``kernels`` fixture (the training steps) runs its xpnet code on the
cpu twice, back to back at each size: with the cpu backend's numba kernels ("kernels") and
built and timed inside ``jit.off()`` ("numpy"), so the report can set them side by side.
Where the kernels cannot run (numba missing, ``XPNET_JIT=0``) it runs the NumPy case only;
on a GPU, and for the references (NumPy floor, PyTorch), once, as before.
"""
from itertools import product

import pytest
from _timing import time_on

import xpnet as xn
from xpnet.backends import jit

# The implementations that are xpnet's own code: on the cpu, the kernels apply to them.
XPNET_IMPLS = ("xpnet", "backward", "autodiff")


def pytest_addoption(parser):
    parser.addoption("--size", default="quick", choices=["quick", "full"],
                     help="quick: about a minute on a 2-core CPU; full: up to n=8192 and 1 GB copies")
    parser.addoption("--devices", default="", help="comma-separated devices (default: cpu and every GPU)")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Whether the cpu kernels ran, and why (not), for the report's one line about them."""
    on, why = jit.status()
    machine_info["xpnet_cpu_kernels"] = {"on": on, "why": why}


def _speed_devices(config):
    chosen = config.getoption("--devices")
    if chosen:
        return [xn.Device(d) for d in chosen.split(",")]
    return [d for d in xn.available_devices() if d.kind != "sim"]


def _kernel_modes(device, impl):
    """(value, id) of the ``kernels`` parameter for one device and implementation."""
    if device.kind != "cpu" or (impl is not None and impl not in XPNET_IMPLS):
        return [(None, None)]
    return ([("on", "kernels")] if jit.status()[0] else []) + [("off", "numpy")]


def pytest_generate_tests(metafunc):
    """One parametrization of device, size, implementation and kernel mode, in that order,
    so that one size's implementations (and an implementation's kernel modes) run back to
    back: a slow spell of a shared machine then falls on all of them alike."""
    names = metafunc.fixturenames
    axes = {}
    if "speed_device" in names:
        axes["speed_device"] = [(d, d.name) for d in _speed_devices(metafunc.config)]
    if "size" in names and hasattr(metafunc.function, "sizes"):
        sizes = metafunc.function.sizes[metafunc.config.getoption("--size")]
        axes["size"] = [(s, str(s)) for s in sizes]
    if "impl" in names and hasattr(metafunc.function, "impls"):
        axes["impl"] = [(i, i) for i in metafunc.function.impls]
    if not axes:
        return
    argnames, values, ids = list(axes), [], []
    kernels = "kernels" in names and "speed_device" in axes
    for combo in product(*axes.values()):
        chosen = dict(zip(argnames, (value for value, _ in combo)))
        modes = _kernel_modes(chosen["speed_device"], chosen.get("impl")) if kernels else [(None, None)]
        for mode, mode_id in modes:
            values.append(tuple(v for v, _ in combo) + ((mode,) if kernels else ()))
            ids.append("-".join([i for _, i in combo] + ([mode_id] if mode_id else [])))
    if kernels:
        argnames.append("kernels")
    metafunc.parametrize(argnames, values, ids=ids, indirect=["kernels"] if kernels else False)


def sizes(quick, full):
    """Decorator: the sizes a case runs at in the quick and the full set."""
    def mark(fn):
        fn.sizes = {"quick": quick, "full": full}
        return fn
    return mark


def impls(*names):
    """Decorator: the implementations a case times (its ``impl`` argument), after each size."""
    def mark(fn):
        fn.impls = names
        return fn
    return mark


@pytest.fixture
def kernels(request):
    """"on": the cpu kernels run; "off": the case is built and timed inside ``jit.off()``
    (every routine in NumPy); None: not xpnet's code on the cpu (a GPU, a reference)."""
    mode = getattr(request, "param", None)
    if mode == "off":
        with jit.off():
            yield mode
    else:
        yield mode


@pytest.fixture
def timed(benchmark, speed_device, request):
    """``timed(case, fn, size, flop=..., nbytes=...)``: time fn on the speed device.

    Records the case, size, device, work and kernel mode in extra_info, which
    bench/report.py reads.
    """
    mode = request.getfixturevalue("kernels") if "kernels" in request.fixturenames else None

    def run(case, fn, size, flop=None, nbytes=None, rounds=None, reference=None):
        benchmark.group = f"{case} {size}"
        benchmark.extra_info.update(case=case, size=size, device=speed_device.name,
                                    impl=reference or "xpnet", flop=flop, nbytes=nbytes, kernels=mode)
        if mode is not None:  # a first call loads (or compiles) the kernels it uses: not in the timer's
            fn()              # estimate of a call, from which it sets the rounds
        return time_on(benchmark, speed_device, fn, rounds=rounds)
    return run
