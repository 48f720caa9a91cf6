"""BatchNorm's training forward and backward alone on the cpu backend (numba kernels where
on), float32, median of 200 calls each: the speedrun's two 4-D batches, a DeepConvNet-sized
one and the regularised MLP's 2-D one.

    python bench/results/cpu-2026-11-29/bn_maps.py
"""
import time

import numpy

from xpnet.backends.numpy import NumpyBackend

SHAPES = [(128, 16, 12, 12), (128, 32, 5, 5), (100, 16, 28, 28), (100, 256)]


def main():
    backend, rng = NumpyBackend(), numpy.random.default_rng(0)
    for shape in SHAPES:
        c = shape[1]
        x, dout = (rng.standard_normal(shape).astype(numpy.float32) for _ in range(2))
        gamma, beta = numpy.ones(c, numpy.float32), numpy.zeros(c, numpy.float32)
        running = [numpy.zeros(c, numpy.float32), numpy.ones(c, numpy.float32)]
        grads = [numpy.empty(c, numpy.float32), numpy.empty(c, numpy.float32)]

        def forward():
            return backend.batchnorm_forward(x, gamma, beta, *running, 0.9, 1e-5, True)
        _, xn, std = forward()

        def backward():
            return backend.batchnorm_backward(dout, gamma, xn, std, *grads, True)
        backward()
        times = {"forward": [], "backward": []}
        for _ in range(200):
            for name, call in (("forward", forward), ("backward", backward)):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        print(f"{shape}: forward {numpy.median(times['forward']) * 1e6:.1f} us, "
              f"backward {numpy.median(times['backward']) * 1e6:.1f} us", flush=True)


if __name__ == "__main__":
    main()
