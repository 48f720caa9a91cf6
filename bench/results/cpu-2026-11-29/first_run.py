"""Whole-process cost of the numba kernels: the regularised MLP (784-256-256-10, BatchNorm,
Dropout 0.2, Adam) for 20 steps of batch 100, every kernel it uses compiled (cold cache)
or loaded from the cache (warm), against XPNET_JIT=0.

    for mode in cold warm warm off; do ...; done   (see first_run.txt for the commands)
"""
import time

start = time.perf_counter()
import numpy  # noqa: E402

import xpnet as xn  # noqa: E402

xn.seed(0)
model = xn.nn.Sequential(xn.nn.Affine(784, 256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                         xn.nn.Affine(256, 256), xn.nn.BatchNorm(256), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                         xn.nn.Affine(256, 10))
opt, loss_fn = xn.optim.Adam(model), xn.nn.SoftmaxCrossEntropy()
rng = numpy.random.default_rng(0)
x, t = rng.random((100, 784), dtype=numpy.float32), rng.integers(0, 10, 100)
first = None
for i in range(20):
    loss_fn(model(x), t)
    model.backward(loss_fn.backward())
    opt.step()
    if i == 0:
        first = time.perf_counter() - start
print(f"first step done at {first:.2f} s, 20 steps at {time.perf_counter() - start:.2f} s "
      f"(cpu kernels {xn.Device('cpu').backend.describe()['kernels'][:3].strip(':')})")
