"""What Sequential's buffer plan buys: the same training step with the layers' reused
result buffers (the plan) and with every layer allocating its results afresh, timed in
turns in one process (bench/compare.py's ``compare``), so a slow spell of a shared machine
falls on both alike.

    cd bench; python buffer_plan.py [mlp regularised cnn deepconv]

The ratio fresh/reuse above 1 is what the plan saves. (The in-place part of the old plan,
activations writing over their input, was removed: it overwrote arrays that a caller or
another layer still held. Issue 31 asked for this measurement before keeping the rest.)
"""
import sys

import numpy
from compare import compare
from models import convnet, deep_convnet, regularised_mlp

import xpnet as xn


def mlp(seed=0):
    xn.seed(seed)
    nn = xn.nn
    return nn.Sequential(nn.Affine(784, 100), nn.ReLU(), nn.Affine(100, 50), nn.ReLU(), nn.Affine(50, 10))


MODELS = {"mlp": (mlp, (784,)), "regularised": (regularised_mlp, (784,)),
          "cnn": (convnet, (1, 28, 28)), "deepconv": (deep_convnet, (1, 28, 28))}


def _step(model, x, t):
    opt, loss = xn.optim.Adam(model, lr=1e-3), xn.nn.SoftmaxCrossEntropy()

    def run():
        loss(model.forward(x), t)
        model.backward(loss.backward())
        opt.step()
    return run


def _allocating(model):
    """The model with every layer's reusable-buffer source switched off."""
    for layer in model.layers:
        layer.workspace = lambda name, shape, dtype: None
    return model


def main(names):
    for name in names:
        build, shape = MODELS[name]
        rng = numpy.random.default_rng(0)
        x = rng.standard_normal((100,) + shape).astype(numpy.float32)
        t = rng.integers(0, 10, 100)
        steps = {"reuse": _step(build(), x, t), "fresh": _step(_allocating(build()), x, t)}
        r = compare(steps, rounds=11 if name != "deepconv" else 5)
        print(f"{name}: reuse {r['reuse'] * 1e3:.3f} ms, fresh {r['fresh'] * 1e3:.3f} ms, "
              f"fresh/reuse {r['fresh'] / r['reuse']:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
