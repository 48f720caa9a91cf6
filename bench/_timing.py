"""How every benchmark is timed: settle, warm up, then time calls that end with a synchronize.

On a GPU, a call returns once its kernels are queued; without ``synchronize()`` the
timer measures launch time, not work (the mistake behind the matmul figure in the
article xpnet grew from). On cpu and sim, synchronize is a no-op.

On the CPU, each case first waits ``SETTLE`` seconds. After its last call, a BLAS or
OpenMP library's worker threads keep spinning for a while (OpenBLAS's the longest), and
a case timed while another library's workers still spin on the second core is slowed by
them. On the 2-core development machine, PyTorch's MLP step at batch 100 took
1.16-1.26 ms when timed right after NumPy's OpenBLAS had run and 0.68-0.87 ms after a
0.5 s pause, which made ratios against PyTorch look better for xpnet than they are.
"""
import time

SETTLE = 0.5  # seconds: enough on the development machine (measured above), short beside a case


def synchronized(fn, device):
    def run():
        out = fn()
        device.synchronize()
        return out
    return run


def auto_rounds(seconds_per_call):
    """Enough rounds for a stable median in about half a second, between 5 and 200."""
    return int(min(200, max(5, 0.5 / max(seconds_per_call, 1e-6))))


def time_on(benchmark, device, fn, rounds=None, warmup=2):
    run = synchronized(fn, device)
    if device.kind == "cpu" and not getattr(benchmark, "disabled", False):
        time.sleep(SETTLE)
    start = time.perf_counter()
    for _ in range(warmup):  # context creation, kernel compilation, pool growth, buffers
        run()
    per_call = (time.perf_counter() - start) / warmup
    if getattr(benchmark, "disabled", False):
        return benchmark(run)
    return benchmark.pedantic(run, rounds=rounds or auto_rounds(per_call), iterations=1, warmup_rounds=1)
