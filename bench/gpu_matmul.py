"""An 8192^3 float32 product through xpnet's CUDA backend (cuBLAS called through ctypes)
against CuPy's own matmul, in turns, each timed with CUDA events:

    python bench/gpu_matmul.py
    CUPY_TF32=1 python bench/gpu_matmul.py --tf32   # both on TF32 tensor cores
"""
import os
import sys

import cupy
import numpy

import xpnet as xn


def main(n=8192, rounds=10):
    if "--tf32" in sys.argv:
        if os.environ.get("CUPY_TF32") != "1":
            sys.exit("--tf32 compares with CuPy's TF32 products: run with CUPY_TF32=1 (read when CuPy loads)")
        xn.set_matmul_precision("tf32")
    print(f"matmul precision: xpnet {xn.get_matmul_precision()}, CUPY_TF32={os.environ.get('CUPY_TF32', 'unset')}")
    backend = xn.Device("cuda").backend
    rng = cupy.random.default_rng(0)
    a, b = rng.random((n, n), dtype=cupy.float32), rng.random((n, n), dtype=cupy.float32)
    out = cupy.empty((n, n), cupy.float32)
    fns = {"xpnet": lambda: backend.matmul(a, b, out=out), "cupy": lambda: cupy.matmul(a, b, out=out)}
    for fn in fns.values():  # warm-up: handles, heuristics
        fn()
    times = {name: [] for name in fns}
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            fns[name]()
            end.record()
            end.synchronize()
            times[name].append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    ref = cupy.matmul(a[:512], b)
    err = float(abs(backend.matmul(a[:512], b) - ref).max() / abs(ref).max())
    for name, ts in times.items():
        m = float(numpy.median(ts))
        print(f"{name:6s} median {m * 1e3:.2f} ms  {2 * n ** 3 / m / 1e12:.1f} TFLOP/s")
    ratio = numpy.median(times["cupy"]) / numpy.median(times["xpnet"])
    print(f"xpnet/cupy throughput ratio: {ratio:.3f}; max rel diff {err:.2e}")


if __name__ == "__main__":
    main()
