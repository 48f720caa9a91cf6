"""Issue 7's side-by-side: xpnet, the NumPy floor and PyTorch eager on one training step,
timed in turns within one process, so that a slow spell of a shared machine falls on
all three alike.

The pytest-benchmark cases time each implementation as a separate case, one after the
other; on the noisy 2-core development machine a whole case can land in a slow spell
(torch / xpnet at batch 32 came out 3.73 in one run and 1.14 in the next). Here each
round times a block of steps of every implementation in turn (the order rotating from
round to round), each after the same settle pause as the suite (bench/_timing.py), and
the report is the median over rounds.

    python bench/compare.py [--batch 32,100,256] [--rounds 15] [--large]
"""
import argparse
import time

import numpy
import pytest
from _timing import SETTLE
from test_training import LARGE, MLP, _reference

import xpnet as xn

IMPLS = ("xpnet", "numpy-floor", "torch")


def compare(layers, batch, rounds, block_seconds=0.1):
    device = xn.Device("cpu")
    steps = {}
    for impl in IMPLS:
        try:
            steps[impl] = _reference(impl, device, layers, batch)
        except pytest.skip.Exception as exc:  # PyTorch not installed
            print(f"  {impl}: skipped ({exc})")
    for step in steps.values():  # warm-up: buffers, BLAS and OpenMP thread pools
        for _ in range(20):
            step()
    start = time.perf_counter()
    for _ in range(20):
        steps["xpnet"]()
    calls = max(5, round(block_seconds / ((time.perf_counter() - start) / 20)))
    times = {impl: [] for impl in steps}
    order = list(steps)
    for r in range(rounds):
        for impl in order[r % len(order):] + order[:r % len(order)]:  # none always follows the same one
            step = steps[impl]
            time.sleep(SETTLE)
            start = time.perf_counter()
            for _ in range(calls):
                step()
            times[impl].append((time.perf_counter() - start) / calls)
    return {impl: float(numpy.median(t)) for impl, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="32,100,256", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--large", action="store_true", help="784-1024-1024-10 instead of the TF2 MLP")
    args = parser.parse_args()
    layers = LARGE if args.large else MLP
    blas = xn.Device("cpu").backend.describe()["BLAS"]
    print(f"{'-'.join(map(str, layers))}, SGD, float32; median of {args.rounds} rounds; {blas}")
    print("| batch | xpnet ms | floor ms | torch ms | xpnet / floor (time) | torch / xpnet (time) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for batch in (int(b) for b in args.batch.split(",")):
        t = compare(layers, batch, args.rounds)
        ms = [f"{t[i] * 1e3:.3f}" if i in t else "-" for i in IMPLS]
        floor = f"{t['xpnet'] / t['numpy-floor']:.2f}" if "numpy-floor" in t else "-"
        torch = f"{t['torch'] / t['xpnet']:.2f}" if "torch" in t else "-"
        print(f"| {batch} | {' | '.join(ms)} | {floor} | {torch} |", flush=True)


if __name__ == "__main__":
    main()
