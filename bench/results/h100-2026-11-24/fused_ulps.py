"""The fused CUDA routines against the portable ones, ulps apart: from the repository root on a GPU,
    PYTHONPATH=. python3 bench/results/h100-2026-11-24/fused_ulps.py   (output of 2026-11-24: fused-ulps.txt)"""
import numpy

import xpnet as xn
from tests.test_backends import _fused_cases
from xpnet.backends.numpy import NumpyBackend

dev = xn.Device("cuda")
for name, args, _, compared in _fused_cases(numpy.random.default_rng(1234)):
    expected = [a.copy() if isinstance(a, numpy.ndarray) else a for a in args]
    getattr(NumpyBackend(), name)(*expected)
    on = xn.to_device(list(args), dev)
    with dev.backend.activate():
        getattr(dev.backend, name)(*on)
    for i in compared:
        got, want = xn.to_host(on[i]), expected[i]
        if want.dtype.kind == "f":
            f32 = want.dtype == numpy.float32
            ulps = numpy.abs(got.view(numpy.int32) - want.view(numpy.int32)).max() if f32 else None
            print(name, i, "equal", numpy.array_equal(got, want), "max ulps", ulps)
        else:
            print(name, i, "equal", numpy.array_equal(got, want))
