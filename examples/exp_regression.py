"""The Chainer article's regression of e^x: 1-16-32-1, leaky ReLU 0.2, Adam, MSE,
batches of 100 drawn afresh each step, 10000 steps.

    python examples/exp_regression.py            # writes out/exp_regression/fit.png
"""
import argparse
import time
from pathlib import Path

import numpy

import xpnet as xn
from xpnet.cli import ArgumentParser, nonnegative_int, positive_float, positive_int


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=positive_int, default=10000)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--lr", type=positive_float, default=0.001)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--out", default="out/exp_regression")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before training: a bad --out fails now, not after

    device = xn.Device(args.device) if args.device else xn.current_device()
    xn.seed(args.seed)
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(1, 16), xn.nn.LeakyReLU(0.2), xn.nn.Affine(16, 32),
                                 xn.nn.LeakyReLU(0.2), xn.nn.Affine(32, 1))
        loss_fn = xn.nn.MeanSquaredError()
        optimizer = xn.optim.Adam(model, lr=args.lr)
        # The article draws a fresh batch every step; draw them all up front and copy once.
        x_all, t_all = xn.datasets.exp_regression(args.steps * args.batch_size, seed=args.seed)
        x_dev, t_dev = xn.to_device((x_all, t_all))
        losses = xn.xp.empty(args.steps, dtype=numpy.float32)
        start = time.perf_counter()
        for step in range(args.steps):
            lo = step * args.batch_size
            xb, tb = x_dev[lo:lo + args.batch_size], t_dev[lo:lo + args.batch_size]
            losses[step] = loss_fn(model(xb), tb)
            model.backward(loss_fn.backward())
            optimizer.step()
        losses = xn.to_host(losses)
        seconds = time.perf_counter() - start
        x_grid = numpy.linspace(-2, 2, 200, dtype=numpy.float32).reshape(-1, 1)
        model.eval()
        y_grid = xn.to_host(model(xn.to_device(x_grid)))
    print(f"{device}: {args.steps} steps in {seconds:.1f} s; final loss {losses[-100:].mean():.5f}; "
          f"max error on [-2, 2] {numpy.abs(y_grid - numpy.exp(x_grid)).max():.4f}")
    try:
        from xpnet.plot import plot_regression
        print("plot:", plot_regression(x_grid, numpy.exp(x_grid), y_grid, losses, out / "fit.png",
                                       title=f"e^x on {device}"))
    except ImportError as exc:
        print(f"no plot: {exc}")


if __name__ == "__main__":
    main()
