"""Kernel launches per training step, counted exactly on sim (issue 14): what a GPU would
launch for one step run kernel by kernel, and for the same step recorded and replayed.

    python bench/launches.py

On a GPU each launch costs the host 9-18 us (measured on the H100, bench/results/
h100-2026-11-23), so a small network's step is bound by its launch count; a recorded step
is one launch of all its kernels.
"""
import numpy
from models import convnet, regularised_mlp
from test_training import MLP, mlp

import xpnet as xn


def regression():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(1, 16), xn.nn.LeakyReLU(0.2), xn.nn.Affine(16, 32),
                            xn.nn.LeakyReLU(0.2), xn.nn.Affine(32, 1))


MODELS = {  # name: (model, optimizer, input shape, loss)
    "TF2 MLP 784-100-50-10, SGD": (lambda: mlp(MLP), lambda m: xn.optim.SGD(m, lr=0.1), (784,), None),
    "MLP 784-256-256-10, BatchNorm, Dropout 0.2, Adam": (regularised_mlp, xn.optim.Adam, (784,), None),
    "SimpleConvNet, Adam": (convnet, xn.optim.Adam, (1, 28, 28), None),
    "e^x regression 1-16-32-1, Adam": (regression, xn.optim.Adam, (1,), "mse"),
}


def count(name, batch=100):
    """(kernels in one step run kernel by kernel, launches of one recorded step or None)."""
    build, make_opt, shape, loss_kind = MODELS[name]
    sim = xn.Device("sim")
    with xn.use_device(sim):
        model, rng = build(), numpy.random.default_rng(0)
        opt = make_opt(model)
        x = xn.to_device(rng.random((batch,) + shape, dtype=numpy.float32))
        if loss_kind == "mse":
            loss, t = xn.nn.MeanSquaredError(), xn.to_device(rng.random((batch, 1), dtype=numpy.float32))
        else:
            loss, t = xn.nn.SoftmaxCrossEntropy(), xn.to_device(rng.integers(0, 10, batch))

        def step():
            value = loss(model.forward(x), t)
            model.backward(loss.backward())
            opt.step()
            return value
        step()  # the first step allocates buffers and optimizer state
        before = xn.launch_stats()[sim.name]
        step()
        eager = (xn.launch_stats()[sim.name] - before).kernels
        recorded = sim.backend.record(step, owners=(model, loss))
        try:
            recorded()  # eager run
            recorded()  # recorded while it runs
        except xn.CaptureError as exc:
            return eager, None, str(exc).split(" while ")[0]
        before = xn.launch_stats()[sim.name]
        recorded()
        replay = xn.launch_stats()[sim.name] - before
        return eager, replay, None


def main():
    print("| model, batch 100 | kernels a step | launches a step, kernel by kernel | launches a step, recorded |")
    print("| --- | --- | --- | --- |")
    for name in MODELS:
        eager, replay, why = count(name)
        recorded = f"{replay.launches} ({replay.kernels} kernels)" if replay else f"not recordable: {why}"
        print(f"| {name} | {eager} | {eager} | {recorded} |")


if __name__ == "__main__":
    main()
