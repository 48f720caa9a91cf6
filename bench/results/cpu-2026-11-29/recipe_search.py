"""The speedrun recipe search of session 4: one conv-ReLU-pool(-BN) x 2 (-affine-ReLU)-affine
network, trained for --epochs on all 60,000 MNIST images with the speedrun's optimizer
(Nesterov 0.9, weight decay 5e-4, one-cycle, label smoothing 0.1), in PyTorch or xpnet,
seed after seed in one process; prints each seed's test accuracy and training seconds.

    python bench/results/cpu-2026-11-29/recipe_search.py torch --seeds 0 1 2
    python bench/results/cpu-2026-11-29/recipe_search.py xpnet --kernel 3 --pad 1 --hidden 0 --epochs 2
    python bench/results/cpu-2026-11-29/recipe_search.py xpnet --no-bn1 --lr 0.3

The defaults are the recipe examples/mnist_speedrun.py settled on (conv 5x5 16, conv 3x3 32,
nothing padded, affine 128, one epoch); ``--kernel 3 --pad 1 --hidden 0 --epochs 2`` is the
one before it. MNIST from $XPNET_DATA_DIR: for PyTorch as bench/torch_speedrun.py reads it,
for xpnet with xn.datasets.mnist (so an xpnet run never imports torch).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/


def layers(args):
    """The network as (kind, arguments) pairs, the same for both frameworks."""
    w1, w2 = args.widths
    size = (28 + 2 * args.pad - args.kernel + 1) // 2
    size = (size + 2 * args.pad - 3 + 1) // 2
    spec = [("conv", (1, w1, args.kernel, args.pad)), ("relu", ()), ("pool", ())]
    spec += [("bn", (w1,))] if args.bn1 else []
    spec += [("conv", (w1, w2, 3, args.pad)), ("relu", ()), ("pool", ()), ("bn", (w2,)), ("flatten", ())]
    if args.hidden:
        return spec + [("affine", (w2 * size * size, args.hidden)), ("relu", ()), ("affine", (args.hidden, 10))]
    return spec + [("affine", (w2 * size * size, 10))]


def torch_data():
    import torch_speedrun  # noqa: PLC0415 (imports torch)
    return torch_speedrun.mnist()


def xpnet_data():
    import xpnet as xn  # noqa: PLC0415
    return xn.datasets.mnist(flatten=False)


def torch_run(args, seed, data):
    import torch  # noqa: PLC0415
    import torch_speedrun  # noqa: PLC0415
    nn = torch.nn
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    make = {"conv": lambda i, o, k, p: nn.Conv2d(i, o, k, padding=p), "relu": nn.ReLU, "pool": lambda: nn.MaxPool2d(2),
            "bn": nn.BatchNorm2d, "flatten": nn.Flatten, "affine": nn.Linear}
    net = nn.Sequential(*(make[kind](*a) for kind, a in layers(args)))
    (x, t), (xt, tt) = data
    start = time.perf_counter()
    torch_speedrun.train(net, x, t, args.epochs, args.batch_size, args.lr, 0.1)
    seconds = time.perf_counter() - start
    return torch_speedrun.accuracy(net, xt, tt), seconds


def xpnet_run(args, seed, data):
    import xpnet as xn  # noqa: PLC0415
    nn = xn.nn
    make = {"conv": lambda i, o, k, p: nn.Conv2D(i, o, k, pad=p), "relu": nn.ReLU, "pool": lambda: nn.MaxPool2D(2),
            "bn": nn.BatchNorm, "flatten": None, "affine": nn.Affine}
    (x, t), test = data
    xn.seed(seed)
    model = nn.Sequential(*(make[kind](*a) for kind, a in layers(args) if make[kind]))
    opt = xn.optim.Momentum(model, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xn.optim.schedules.OneCycle(opt, max_lr=args.lr, total_steps=args.epochs * (len(x) // args.batch_size),
                                pct_start=0.25)
    start = time.perf_counter()
    xn.fit(model, nn.SoftmaxCrossEntropy(label_smoothing=0.1), opt, (x, t), epochs=args.epochs,
           batch_size=args.batch_size, drop_last=True, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    return xn.evaluate(model, test, batch_size=250)["accuracy"], seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framework", choices=["torch", "xpnet"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kernel", type=int, default=5, help="the first convolution's kernel")
    parser.add_argument("--pad", type=int, default=0, help="both convolutions' padding")
    parser.add_argument("--widths", type=int, nargs=2, default=[16, 32])
    parser.add_argument("--hidden", type=int, default=128, help="0: no hidden affine layer")
    parser.add_argument("--no-bn1", dest="bn1", action="store_false", help="no BatchNorm after the first stage")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.3)
    args = parser.parse_args()
    data, run = (xpnet_data(), xpnet_run) if args.framework == "xpnet" else (torch_data(), torch_run)
    results = [run(args, seed, data) for seed in args.seeds]
    print(" ".join(sys.argv[1:]), "| accuracy", " ".join(f"{a:.4f}" for a, _ in results),
          "| training s", " ".join(f"{s:.1f}" for _, s in results), flush=True)


if __name__ == "__main__":
    main()
