"""Session 5: what a Python-level Layer.__setattr__ (turning NumPy numbers into Python ones on
every attribute a layer sets) would cost the TF2 MLP step (784-100-50-10, SGD, batch 100), in
one process, the two variants in alternating rounds (best of 5 blocks of 400 steps a round).
It was not adopted: the settings became _validate.Setting descriptors instead.

    python bench/results/cpu-2026-11-29/ab_setattr.py
"""
import sys
import time

import numpy

sys.path.insert(0, "bench")  # run from the repository root
from test_training import MLP, _xpnet_step  # noqa: E402

import xpnet as xn  # noqa: E402
from xpnet.nn.layer import Layer  # noqa: E402


def normalising_setattr(self, name, value):
    object.__setattr__(self, name, value.item() if isinstance(value, numpy.generic) else value)


def best_of(step, n=400, blocks=5):
    """Microseconds a step, the best block of ``n`` steps."""
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - start) / n)
    return min(times) * 1e6


def main():
    step = _xpnet_step(xn.Device("cpu"), MLP, 100)
    for _ in range(300):
        step()
    results = {"plain": [], "setattr": []}
    for round_ in range(8):
        for mode in ("plain", "setattr") if round_ % 2 == 0 else ("setattr", "plain"):
            if mode == "setattr":
                Layer.__setattr__ = normalising_setattr
            elif "__setattr__" in vars(Layer):
                del Layer.__setattr__
            results[mode].append(best_of(step))
    for mode, values in results.items():
        print(mode, f"median {sorted(values)[len(values) // 2]:.1f} us", [f"{v:.1f}" for v in values])


if __name__ == "__main__":
    main()
