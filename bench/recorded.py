"""Issue 14's GPU comparison: each model's training step in xpnet, kernel by kernel and
recorded (what ``fit`` runs), against PyTorch eager and PyTorch's own CUDA graph
(``capturable=True`` Adam), timed in turns in one process, every call synchronized.

    python bench/recorded.py [--device cuda] [--batch 100] [--rounds 15]

Targets (issue 14): the CNN's recorded step at least 2x PyTorch eager's speed; the SGD
MLP's recorded step no slower than PyTorch's CUDA graph. On the CPU nothing records, and
the script compares xpnet with PyTorch eager only.
"""
import argparse
import time

import numpy
from _timing import SETTLE
from models import cnn_steps, deepconv_steps, regularised_steps
from test_training import MLP, _reference

import xpnet as xn


def _mlp_steps(batch, device):
    steps = {}
    for impl in ("xpnet", "xpnet-graph", "torch", "torch-graph"):
        try:
            steps[impl] = _reference(impl, device, MLP, batch)
        except BaseException as exc:  # pytest.skip where a variant does not apply
            if type(exc).__name__ != "Skipped":
                raise
    return steps


def timed(steps, device, rounds, block_seconds=0.1):
    """Median seconds per call of each step, in rotating turns, each block synchronized."""
    run = {name: (lambda s=s: (s(), device.synchronize())) for name, s in steps.items()}
    for r in run.values():
        for _ in range(5):
            r()
    start = time.perf_counter()
    for _ in range(5):
        next(iter(run.values()))()
    calls = max(3, round(block_seconds / ((time.perf_counter() - start) / 5)))
    times = {name: [] for name in run}
    names = list(run)
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            if device.kind == "cpu":
                time.sleep(SETTLE)  # let the last library's spinning BLAS threads stop (bench/_timing.py)
            start = time.perf_counter()
            for _ in range(calls):
                steps[name]()
            device.synchronize()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: float(numpy.median(t)) for name, t in times.items()}


MODELS = {"mlp": ("TF2 MLP, SGD", _mlp_steps),
          "regularised": ("784-256-256-10 BN+Dropout, Adam", regularised_steps),
          "cnn": ("SimpleConvNet, Adam", cnn_steps),
          "deepconv": ("DeepConvNet (ch. 8), Adam", deepconv_steps)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = "cuda" if xn.cuda_unavailable_reason() is None else "cpu"
    parser.add_argument("--device", default=default)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="which models to time (default: all)")
    args = parser.parse_args()
    device = xn.Device(args.device)
    print(f"{device} ({', '.join(f'{k}: {v}' for k, v in device.backend.describe().items())}); "
          f"batch {args.batch}; median of {args.rounds} rounds")
    print("| model | impl | us a step | torch eager / it (speed-up) |")
    print("| --- | --- | --- | --- |")
    for name, build in (MODELS[m] for m in args.models):
        result = timed(build(args.batch, device), device, args.rounds)
        for impl, seconds in result.items():
            ratio = f"{result['torch'] / seconds:.2f}" if "torch" in result else "-"
            print(f"| {name} | {impl} | {seconds * 1e6:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
