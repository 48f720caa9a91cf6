"""The TF2-without-Keras article's MNIST MLP: 784-100-50-10, ReLU, SGD lr 0.1, batch 32.

    python examples/mnist_mlp.py                     # the article's settings, 5 epochs
    python examples/mnist_mlp.py --optimizer adam --hidden 512,256 --dropout 0.2 --lr 0.001 --batch-size 100 --epochs 10
    XPNET_DEVICE=cuda python examples/mnist_mlp.py   # the same script on a GPU

Writes a training-curve PNG (needs matplotlib) and a checkpoint to --out.
Under ``mpiexec -n 2`` it trains data parallel; rank 0 alone prints and writes.
"""
import argparse
import time
from pathlib import Path

import xpnet as xn
from xpnet.cli import ArgumentParser, nonnegative_int, positive_float, positive_int, positive_ints, probability


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu, sim, cuda, cuda:N (default: XPNET_DEVICE or auto)")
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--hidden", type=positive_ints, default="100,50",
                        help="hidden layer sizes, separated by commas")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adagrad", "rmsprop", "adam"])
    parser.add_argument("--lr", type=positive_float, default=0.1)
    parser.add_argument("--dropout", type=probability, default=0.0, help="dropout after each hidden layer")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train and test on the first N images of each set only (a quick run)")
    parser.add_argument("--out", default="out/mnist_mlp")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before training: a bad --out fails now, not after

    device = xn.Device(args.device) if args.device else xn.current_device()
    (x_train, t_train), (x_test, t_test) = xn.datasets.mnist(normalize=True, flatten=True)
    if args.limit:
        x_train, t_train = x_train[:args.limit], t_train[:args.limit]
        x_test, t_test = x_test[:args.limit], t_test[:args.limit]

    xn.seed(args.seed)
    sizes = [784] + args.hidden
    with xn.use_device(device):
        layers = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [xn.nn.Affine(n_in, n_out), xn.nn.ReLU()]
            if args.dropout:
                layers.append(xn.nn.Dropout(args.dropout, seed=args.seed))
        model = xn.nn.Sequential(*layers, xn.nn.Affine(sizes[-1], 10))
    optimizer = {"sgd": xn.optim.SGD, "momentum": xn.optim.Momentum, "adagrad": xn.optim.AdaGrad,
                 "rmsprop": xn.optim.RMSProp, "adam": xn.optim.Adam}[args.optimizer](model, lr=args.lr)

    start = time.perf_counter()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), optimizer, (x_train, t_train),
                     epochs=args.epochs, batch_size=args.batch_size, validation=(x_test, t_test),
                     seed=args.seed)
    seconds = time.perf_counter() - start
    result = xn.evaluate(model, (x_test, t_test))  # every rank: in a distributed run each evaluates a part
    first = xn.distributed.rank() == 0  # in a distributed run, only rank 0 reports and writes
    if first:
        print(f"{device}: {args.epochs} epochs in {seconds:.1f} s; test accuracy {result['accuracy']:.4f}, "
              f"test loss {result['loss']:.4f}")

    xn.save(model, out / "model.npz", optimizer=optimizer)  # every rank: rank 0 writes
    if first:
        hidden = ",".join(map(str, args.hidden))
        try:
            print("plot:", history.plot(out / "training.png", title=f"MNIST MLP {hidden} on {device}"))
        except ImportError as exc:
            print(f"no plot: {exc}")


if __name__ == "__main__":
    main()
