"""The speedrun CNN's training step (examples/mnist_speedrun.py's model and optimizer, batch
128, random data) with a chunked convolution's products on one BLAS thread (as committed
at 9f9bd89) and on OpenBLAS's threads ("before"), alternating round by round in one process.

    python bench/results/cpu-2026-11-29/ab_speedrun_blas.py 600
"""
import contextlib
import sys
from pathlib import Path

import numpy
from _alternate import alternate, print_round, setting

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402
from test_training import _train_step  # noqa: E402

import xpnet as xn  # noqa: E402
from xpnet.backends import blas  # noqa: E402


def build(x, t):
    model = models.speedrun_cnn(0)
    opt = xn.optim.Momentum(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return _train_step(model, opt, x, t, loss=xn.nn.SoftmaxCrossEntropy(label_smoothing=0.1))


def main():
    rng = numpy.random.default_rng(0)
    x, t = rng.random((128, 1, 28, 28), dtype=numpy.float32), rng.integers(0, 10, 128)
    variants = {"one-thread chunks": blas.one_thread, "before": contextlib.nullcontext}
    steps = {k: build(x, t) for k in variants}
    times = alternate(steps, int(sys.argv[1]), calls=5, turn=lambda k: setting(blas, "one_thread", variants[k]),
                      each_round=print_round)
    for k in variants:
        print(k, f"median {numpy.median(times[k]):.2f} ms")


if __name__ == "__main__":
    main()
