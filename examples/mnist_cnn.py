"""The book's convolutional networks on MNIST images (N, 1, 28, 28), trained with Adam:

- SimpleConvNet (ch. 7, the default): conv 30 filters 5x5 - ReLU - max pool 2x2 -
  affine 100 - ReLU - affine 10.
- DeepConvNet (ch. 8, --model deep): six 3x3 convolutions of 16, 16, 32, 32, 64 and 64
  filters with ReLU, a 2x2 max pooling after every second, then affine 50 - ReLU -
  Dropout 0.5 - affine 10 - Dropout 0.5.

    python examples/mnist_cnn.py --epochs 3
    python examples/mnist_cnn.py --model deep --epochs 1

Writes the learned first-layer filters and the training curve as PNGs to --out.
"""
import argparse
import time
from pathlib import Path

import xpnet as xn
from xpnet.cli import ArgumentParser, nonnegative_int, positive_float, positive_int


def simple_convnet():
    return xn.nn.Sequential(
        xn.nn.Conv2D(1, 30, 5, stride=1, pad=0), xn.nn.ReLU(), xn.nn.MaxPool2D(2, stride=2),
        xn.nn.Affine(30 * 12 * 12, 100), xn.nn.ReLU(), xn.nn.Affine(100, 10))


def deep_convnet():
    parts, channels = [], 1
    for i, (filters, pad) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))):
        parts += [xn.nn.Conv2D(channels, filters, 3, pad=pad), xn.nn.ReLU()]
        parts += [xn.nn.MaxPool2D(2)] if i % 2 else []
        channels = filters
    return xn.nn.Sequential(*parts, xn.nn.Affine(64 * 4 * 4, 50), xn.nn.ReLU(), xn.nn.Dropout(0.5),
                            xn.nn.Affine(50, 10), xn.nn.Dropout(0.5))


MODELS = {"simple": ("SimpleConvNet", simple_convnet), "deep": ("DeepConvNet", deep_convnet)}


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="simple")
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--lr", type=positive_float, default=0.001)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train and test on the first N images of each set only (a quick run)")
    parser.add_argument("--out", default=None, help="default: out/mnist_cnn, or out/mnist_deep_cnn")
    args = parser.parse_args()
    out = Path(args.out or ("out/mnist_cnn" if args.model == "simple" else "out/mnist_deep_cnn"))
    out.mkdir(parents=True, exist_ok=True)  # before training: a bad --out fails now, not after

    device = xn.Device(args.device) if args.device else xn.current_device()
    (x_train, t_train), (x_test, t_test) = xn.datasets.mnist(flatten=False)
    if args.limit:
        x_train, t_train = x_train[:args.limit], t_train[:args.limit]
        x_test, t_test = x_test[:args.limit], t_test[:args.limit]
    xn.seed(args.seed)
    name, build = MODELS[args.model]
    with xn.use_device(device):
        model = build()
    optimizer = xn.optim.Adam(model, lr=args.lr)
    start = time.perf_counter()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), optimizer, (x_train, t_train), epochs=args.epochs,
                     batch_size=args.batch_size, validation=(x_test, t_test), seed=args.seed)
    seconds = time.perf_counter() - start
    result = xn.evaluate(model, (x_test, t_test), batch_size=500)
    print(f"{device}: {args.epochs} epochs in {seconds:.1f} s; test accuracy {result['accuracy']:.4f}")

    xn.save(model, out / "model.npz", optimizer=optimizer)
    try:
        from xpnet.plot import plot_filters
        print("plot:", plot_filters(xn.to_host(model.params()["0.W"]), out / "filters.png"))
        print("plot:", history.plot(out / "training.png", title=f"{name} on {device}"))
    except ImportError as exc:
        print(f"no plot: {exc}")


if __name__ == "__main__":
    main()
