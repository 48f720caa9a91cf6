"""Side by side: xpnet, its hand-tuned NumPy floor and PyTorch eager on one training step,
timed in turns within one process, so that a slow spell of a shared machine falls on
all of them alike.

The pytest-benchmark cases time each implementation as a separate case, one after the
other; on the noisy 2-core development machine a whole case can land in a slow spell
(torch / xpnet at batch 32 came out 3.73 in one run and 1.14 in the next). Here each
round times a block of steps of every implementation in turn (the order rotating from
round to round), each after the same settle pause as the suite (bench/_timing.py), and
the report is the median over rounds.

    python bench/compare.py [--model mlp|large|cnn|deepconv|regularised|optimizers] [--batch 32,100] [--rounds 15]

mlp and large (issue 7): the TF2 MLP or 784-1024-1024-10 with SGD; cnn (issue 15): the
book's SimpleConvNet with Adam; deepconv: the book's DeepConvNet (ch. 8) with Adam;
regularised: 784-256-256-10 with Adam, Dropout 0.2 and BatchNorm; optimizers: each
optimizer's update alone on a 1M-parameter model.
"""
import argparse
import time

import numpy
import pytest
from _timing import SETTLE
from test_training import LARGE, MLP, _reference

import xpnet as xn
from xpnet.backends import jit

IMPLS = ("xpnet", "xpnet-numpy", "numpy-floor", "torch")


def compare(steps, rounds, block_seconds=0.1):
    """Median seconds per call of each callable in ``steps``, timed in rotating turns."""
    for step in steps.values():  # warm-up: buffers, BLAS and OpenMP thread pools
        for _ in range(5):
            step()
    first = next(iter(steps.values()))
    start = time.perf_counter()
    for _ in range(5):
        first()
    calls = max(3, round(block_seconds / ((time.perf_counter() - start) / 5)))
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


def mlp_steps(layers, batch):
    device = xn.Device("cpu")
    steps = {}
    for impl in IMPLS:
        try:
            steps[impl] = _reference(impl, device, layers, batch)
        except pytest.skip.Exception as exc:  # PyTorch not installed
            print(f"  {impl}: skipped ({exc})")
    return steps


def with_numpy_only(make_steps):
    """``make_steps()``'s steps, and "xpnet-numpy": xpnet's step built and run with the numba
    kernels off (jit.off), so both modes are timed side by side in one process."""
    steps = make_steps()
    if jit.status()[0]:
        with jit.off():
            plain = make_steps()["xpnet"]

        def numpy_only():
            with jit.off():
                plain()
        steps["xpnet-numpy"] = numpy_only
    return steps


def _row(label, t):
    ms = [f"{t[i] * 1e3:.3f}" if i in t else "-" for i in IMPLS]
    floor = f"{t['xpnet'] / t['numpy-floor']:.2f}" if "numpy-floor" in t else "-"
    torch = f"{t['torch'] / t['xpnet']:.2f}" if "torch" in t else "-"
    torch_numpy = f"{t['torch'] / t['xpnet-numpy']:.2f}" if "torch" in t and "xpnet-numpy" in t else "-"
    speedup = f"{t['xpnet-numpy'] / t['xpnet']:.2f}" if "xpnet-numpy" in t else "-"
    return f"| {label} | {' | '.join(ms)} | {floor} | {torch} | {torch_numpy} | {speedup} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mlp",
                        choices=["mlp", "large", "cnn", "deepconv", "regularised", "optimizers"])
    parser.add_argument("--batch", default=None, help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    blas = xn.Device("cpu").backend.describe()["BLAS"]
    default_batch = {"mlp": "32,100,256", "large": "32,100,256", "cnn": "32,100", "deepconv": "100",
                     "regularised": "100"}
    title = {"mlp": f"{'-'.join(map(str, MLP))}, SGD", "large": f"{'-'.join(map(str, LARGE))}, SGD",
             "cnn": "SimpleConvNet, Adam", "deepconv": "DeepConvNet, Adam",
             "regularised": "784-256-256-10, BatchNorm, Dropout 0.2, Adam",
             "optimizers": "one update of a 1000x1000 Affine (1,001,000 parameters)"}[args.model]
    print(f"{title}, float32; median of {args.rounds} rounds; {blas}")
    first = "optimizer" if args.model == "optimizers" else "batch"
    print(f"cpu kernels {jit.status()[1]}; xpnet-numpy: the same step with them off (jit.off)")
    print(f"| {first} | xpnet ms | xpnet-numpy ms | floor ms | torch ms | xpnet / floor (time) | torch / xpnet (time) "
          f"| torch / xpnet-numpy (time) | xpnet-numpy / xpnet (time) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    if args.model == "optimizers":
        from models import OPTIMIZERS, optimizer_steps
        for name in OPTIMIZERS:
            print(_row(name, compare(with_numpy_only(lambda: optimizer_steps(name)), args.rounds)), flush=True)
        return
    for batch in (int(b) for b in (args.batch or default_batch[args.model]).split(",")):
        if args.model in ("mlp", "large"):
            steps = with_numpy_only(lambda: mlp_steps(LARGE if args.model == "large" else MLP, batch))
        else:
            import models
            steps = with_numpy_only(lambda: getattr(models, f"{args.model}_steps")(batch))
        print(_row(batch, compare(steps, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
