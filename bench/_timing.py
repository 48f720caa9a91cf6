"""How every benchmark is timed: warm up, then time calls that end with a synchronize.

On a GPU, a call returns once its kernels are queued; without ``synchronize()`` the
timer measures launch time, not work (the mistake behind the matmul figure in the
article xpnet grew from). On cpu and sim, synchronize is a no-op.
"""


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
    import time
    run = synchronized(fn, device)
    start = time.perf_counter()
    for _ in range(warmup):  # context creation, kernel compilation, pool growth, buffers
        run()
    per_call = (time.perf_counter() - start) / warmup
    if getattr(benchmark, "disabled", False):
        return benchmark(run)
    return benchmark.pedantic(run, rounds=rounds or auto_rounds(per_call), iterations=1, warmup_rounds=1)
