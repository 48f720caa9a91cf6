"""The two ways of a stride-1 input gradient alone (routines/conv.py's
``input_grad_scatter_ratio``): as a convolution of dy (ratio None) and as W.T @ dy with
col2im's scatter (ratio 0), on the cpu backend (numba kernels where on), alternating call by
call in one process, batch 100, float32; the median of 30 calls each, and the ratio of the
convolution's columns to col2im's that the rule compares.

    python bench/results/cpu-2026-11-29/input_grad_ways.py
"""
import time

import numpy

import xpnet as xn

# (dy, W, x) shapes and the forward's padding: the speedrun's unpadded second layer, then
# layers that halve the channels back, then DeepConvNet's equal-channel ones
CASES = [((100, 32, 10, 10), (32, 16, 3, 3), (100, 16, 12, 12), 0),
         ((100, 32, 14, 14), (32, 16, 3, 3), (100, 16, 14, 14), 1),
         ((100, 64, 7, 7), (64, 32, 3, 3), (100, 32, 7, 7), 1),
         ((100, 16, 28, 28), (16, 16, 3, 3), (100, 16, 28, 28), 1),
         ((100, 32, 14, 14), (32, 32, 3, 3), (100, 32, 14, 14), 1),
         ((100, 64, 7, 7), (64, 64, 3, 3), (100, 64, 7, 7), 1),
         ((100, 64, 8, 8), (64, 64, 3, 3), (100, 64, 8, 8), 1)]


def main():
    backend = xn.Device("cpu").backend
    rng = numpy.random.default_rng(0)
    for dy_shape, w_shape, x_shape, pad in CASES:
        dy, W = (rng.standard_normal(s, dtype=numpy.float32) for s in (dy_shape, w_shape))
        f, c, kh, kw = w_shape
        columns = f * x_shape[2] * (x_shape[3] + kw - 1) / (c * dy_shape[2] * dy_shape[3])
        times = {None: [], 0.0: []}
        for _ in range(31):
            for ratio, took in times.items():
                backend.input_grad_scatter_ratio = ratio
                start = time.perf_counter()
                backend._input_grad(dy, W, x_shape, (1, 1), (pad, pad))
                took.append(time.perf_counter() - start)
        del backend.input_grad_scatter_ratio
        conv, scatter = (numpy.median(t[1:]) * 1e3 for t in times.values())
        print(f"dy {dy_shape} W {w_shape} pad {pad}: columns {columns:.2f}x col2im's; convolution {conv:.2f} ms, "
              f"scatter {scatter:.2f} ms ({scatter / conv:.2f} of it)", flush=True)


if __name__ == "__main__":
    main()
