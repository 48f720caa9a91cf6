"""NumPy's BLAS threads, set through threadpoolctl (installed with the ``jit`` extra and by
``make setup``); without it, or where it finds no BLAS it can set, nothing here changes
anything.

A chunked convolution's products (routines/conv.py) are small, (16, 144) @ (144, 3360)
for DeepConvNet's second layer, and come by the hundred a step; on the 2-core development
VM a second OpenBLAS thread sped them up in some stretches of time and slowed them down in
others (the VM's two speeds: bench/results/cpu-2026-11-29/README.md), so they run on one
thread (``one_thread``), on cpu and sim alike: OpenBLAS can round a product differently
with another thread count, and the two devices stay bit-identical.
"""
from __future__ import annotations

import contextlib
import functools


@functools.cache
def _controller():
    """threadpoolctl's controller of NumPy's BLAS, or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    import numpy  # noqa: F401 (loads the BLAS the controller is to find)
    controller = ThreadpoolController().select(user_api="blas")
    return controller if controller.lib_controllers else None


def settable() -> bool:
    """Whether ``one_thread`` can set NumPy's BLAS threads here."""
    return _controller() is not None


@contextlib.contextmanager
def one_thread():
    """NumPy's BLAS on one thread inside the block, where it can be set (about 10 us a
    block); the thread counts it had after."""
    controller = _controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1):
        yield
