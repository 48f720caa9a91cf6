"""Which of its two speeds the VM is in: a small product, (16, 144) @ (144, 3360), between
single-threaded copies, on OpenBLAS's two threads and on one. Fast stretches: about 0.24 ms
against 0.31; slow ones: 0.31-0.33 ms either way (README.md, "A chunked convolution's
products on one BLAS thread").

    python bench/results/cpu-2026-11-29/mode_probe.py 6     # six probes, 2 s apart
"""
import sys
import time

import numpy
from threadpoolctl import ThreadpoolController

BLAS = ThreadpoolController().select(user_api="blas").lib_controllers[0]


def products(threads, reps=200):
    """ms per product-and-copy with the BLAS on ``threads`` threads."""
    rng = numpy.random.default_rng(0)
    W, C = rng.random((16, 144), dtype=numpy.float32), rng.random((144, 3360), dtype=numpy.float32)
    out, src = numpy.empty((16, 3360), numpy.float32), rng.random(1 << 20, dtype=numpy.float32)
    dst = numpy.empty_like(src)
    BLAS.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(reps):
        numpy.matmul(W, C, out=out)
        dst[:] = src  # single-threaded work between the products (about 0.3 ms)
    return (time.perf_counter() - start) / reps * 1e3


def main():
    threads = BLAS.num_threads
    try:
        for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
            two, one = products(2), products(1)
            print(time.strftime("%H:%M:%S"), f"two threads {two:.3f} ms, one {one:.3f} ms, ratio {two / one:.2f}",
                  flush=True)
            time.sleep(2)
    finally:
        BLAS.set_num_threads(threads)


if __name__ == "__main__":
    main()
