"""The book's SimpleConvNet (ch. 7) on MNIST images (N, 1, 28, 28):
conv 30 filters 5x5 - ReLU - max pool 2x2 - affine 100 - ReLU - affine 10, Adam.

    python examples/mnist_cnn.py --epochs 3

Writes the learned first-layer filters and the training curve as PNGs to --out.
"""
import argparse
import time
from pathlib import Path

import xpnet as xn
from xpnet.cli import positive_int


def simple_convnet():
    return xn.nn.Sequential(
        xn.nn.Conv2D(1, 30, 5, stride=1, pad=0), xn.nn.ReLU(), xn.nn.MaxPool2D(2, stride=2),
        xn.nn.Affine(30 * 12 * 12, 100), xn.nn.ReLU(), xn.nn.Affine(100, 10))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None)
    parser.add_argument("--out", default="out/mnist_cnn")
    args = parser.parse_args()

    device = xn.Device(args.device) if args.device else xn.current_device()
    (x_train, t_train), (x_test, t_test) = xn.datasets.mnist(flatten=False)
    if args.limit:
        x_train, t_train = x_train[:args.limit], t_train[:args.limit]
    xn.seed(args.seed)
    with xn.use_device(device):
        model = simple_convnet()
    optimizer = xn.optim.Adam(model, lr=args.lr)
    start = time.perf_counter()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), optimizer, (x_train, t_train), epochs=args.epochs,
                     batch_size=args.batch_size, validation=(x_test, t_test), seed=args.seed)
    seconds = time.perf_counter() - start
    result = xn.evaluate(model, (x_test, t_test), batch_size=500)
    print(f"{device}: {args.epochs} epochs in {seconds:.1f} s; test accuracy {result['accuracy']:.4f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xn.save(model, out / "model.npz", optimizer=optimizer)
    try:
        from xpnet.plot import plot_filters
        print("plot:", plot_filters(xn.to_host(model.params()["0.W"]), out / "filters.png"))
        print("plot:", history.plot(out / "training.png", title=f"SimpleConvNet on {device}"))
    except ImportError as exc:
        print(f"no plot: {exc}")


if __name__ == "__main__":
    main()
