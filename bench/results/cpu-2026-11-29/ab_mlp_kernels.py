"""The TF2 MLP's training step (784-100-50-10, SGD; bench/test_training.py's) with the cpu
kernels on, off (jit.off), and on without the ReLU or the SGD overrides: one step object,
the four variants alternating block by block in one process (_alternate.py), medians of 60
blocks of 30.

    python bench/results/cpu-2026-11-29/ab_mlp_kernels.py 100
"""
import contextlib
import sys
from pathlib import Path

import numpy
from _alternate import alternate

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
from test_training import MLP, _xpnet_step  # noqa: E402

import xpnet as xn  # noqa: E402
from xpnet.backends import jit  # noqa: E402
from xpnet.backends.numpy import NumpyBackend  # noqa: E402
from xpnet.backends.numpy_elementwise import ElementwiseKernels  # noqa: E402


@contextlib.contextmanager
def without(*names):
    """The cpu backend with these kernel overrides removed (the portable routines run)."""
    saved = {(cls, n): vars(cls)[n] for n in names for cls in (NumpyBackend, ElementwiseKernels) if n in vars(cls)}
    for cls, n in saved:
        delattr(cls, n)
    try:
        yield
    finally:
        for (cls, n), method in saved.items():
            setattr(cls, n, method)


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    step = _xpnet_step(xn.Device("cpu"), MLP, batch)
    variants = {"kernels on": contextlib.nullcontext, "kernels off": jit.off,
                "on but ReLU": lambda: without("relu", "relu_backward"), "on but SGD": lambda: without("sgd_update")}
    for _ in range(100):
        step()
    times = alternate({name: step for name in variants}, 60, calls=30, turn=lambda name: variants[name]())
    for name, t in times.items():
        print(f"batch {batch}, {name}: {numpy.median(t):.3f} ms")


if __name__ == "__main__":
    main()
