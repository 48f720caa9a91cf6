"""Issue 19: training throughput when the set streams from host memory (a memory-mapped
``.npy`` file) against the same set copied to the device once.

    python bench/stream.py [--samples 30000] [--epochs 2]

On sim the device is given a memory cap of half the set, so ``fit`` must stream (the
set is 2x the device); on the CPU ``stream=True`` forces the streamed path. The model
is the TF2 MLP with SGD at batch 100; each configuration is timed in turns, twice.
"""
import argparse
import tempfile

import numpy
from test_training import MLP, mlp

import xpnet as xn


def epoch_seconds(device, data, epochs, **kwargs):
    with xn.use_device(device):
        model = mlp(MLP)
        history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), data, epochs=epochs,
                         batch_size=100, seed=0, **kwargs)
    return min(history.epoch_seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rng = numpy.random.default_rng(0)
    x = rng.random((args.samples, 784), dtype=numpy.float32)
    t = rng.integers(0, 10, args.samples)
    with tempfile.TemporaryDirectory() as folder:
        xm, tm = xn.datasets.load_memmap(xn.datasets.to_memmap(folder, x, t))
        sim = xn.Device("sim").backend
        cap = (x.nbytes + t.nbytes) // 2
        runs = {
            "cpu, in memory": lambda: epoch_seconds("cpu", (x, t), args.epochs),
            "cpu, memmap streamed": lambda: epoch_seconds("cpu", (xm, tm), args.epochs, stream=True),
            "sim, copied once": lambda: epoch_seconds("sim", (x, t), args.epochs),
        }

        def capped():
            sim.memory_limit = cap
            try:
                return epoch_seconds("sim", (xm, tm), args.epochs)
            finally:
                sim.memory_limit = None
        runs[f"sim capped at {cap / 2**20:.0f} MiB, memmap streamed"] = capped
        times = {name: [] for name in runs}
        for _ in range(2):
            for name, run in runs.items():
                times[name].append(run())
    print(f"TF2 MLP, SGD, batch 100, {args.samples} samples of 784 float32 "
          f"({x.nbytes / 2**20:.0f} MiB); best epoch of {args.epochs}, best of 2 turns")
    print("| configuration | epoch s | samples/s | time / in-memory time, same device |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        best = min(values)
        base = min(times["cpu, in memory"] if name.startswith("cpu") else times["sim, copied once"])
        print(f"| {name} | {best:.3f} | {args.samples / best:,.0f} | {best / base:.2f} |")


if __name__ == "__main__":
    main()
