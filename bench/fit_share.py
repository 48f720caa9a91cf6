"""What share of ``fit``'s time is the training step itself (issue 7)?

Times forward, loss, backward and the optimizer step inside three epochs of ``fit`` on
full MNIST with the TF2 MLP at batch 100 (or --batch-size), against the whole of ``fit``.

    XPNET_DATA_DIR=../shared/data python bench/fit_share.py [--no-shuffle] [--batch-size N]
"""
import sys
import time

from test_training import mlp

import xpnet as xn

inside = [0.0]


def _timed(fn):
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - start
    return run


def main():
    shuffle = "--no-shuffle" not in sys.argv
    batch = int(sys.argv[sys.argv.index("--batch-size") + 1]) if "--batch-size" in sys.argv else 100
    (x, t), _ = xn.datasets.mnist()
    model = mlp()
    opt, loss = xn.optim.SGD(model, lr=0.1), xn.nn.SoftmaxCrossEntropy()
    xn.fit(model, loss, opt, (x[:3000], t[:3000]))  # warm-up: buffers, caches
    model.forward, model.backward, opt.step = _timed(model.forward), _timed(model.backward), _timed(opt.step)
    cls = type("TimedLoss", (xn.nn.SoftmaxCrossEntropy,), {
        "__call__": _timed(xn.nn.SoftmaxCrossEntropy.__call__),
        "backward": _timed(xn.nn.SoftmaxCrossEntropy.backward)})
    inside[0] = 0.0
    start = time.perf_counter()
    xn.fit(model, cls(), opt, (x, t), epochs=3, batch_size=batch, seed=0, shuffle=shuffle)
    total = time.perf_counter() - start
    print(f"fit, 3 epochs, batch {batch}, shuffle={shuffle}: {total:.3f} s; inside the training step {inside[0]:.3f} s "
          f"= {inside[0] / total:.1%}")


if __name__ == "__main__":
    main()
