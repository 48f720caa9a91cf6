"""opt.step timed right after the backward pass (OpenBLAS's threads may still spin), with
the numba kernels on and off (jit.off), on the regularised MLP."""
import contextlib
import time

import numpy

import xpnet as xn
from xpnet.backends import jit


def build():
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(784, 256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                             xn.nn.Affine(256, 256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                             xn.nn.Affine(256, 10))
    return model, xn.optim.Adam(model), xn.nn.SoftmaxCrossEntropy()


rng = numpy.random.default_rng(0)
x, t = rng.random((100, 784), dtype=numpy.float32), rng.integers(0, 10, 100)
for mode in ("jit", "numpy"):
    model, opt, loss_fn = build()
    with jit.off() if mode == "numpy" else contextlib.nullcontext():
        for _ in range(5):
            loss_fn(model(x), t)
            model.backward(loss_fn.backward())
            opt.step()
        fb, st = [], []
        for _ in range(100):
            a = time.perf_counter()
            loss_fn(model(x), t)
            model.backward(loss_fn.backward())
            b = time.perf_counter()
            opt.step()
            c = time.perf_counter()
            fb.append(b - a)
            st.append(c - b)
    print(mode, f"fwd+bwd median {numpy.median(fb) * 1e3:.2f} ms, opt.step right after: median "
          f"{numpy.median(st) * 1e6:.0f} us, p90 {numpy.percentile(st, 90) * 1e6:.0f} us")
