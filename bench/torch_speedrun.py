"""The speedrun recipe of examples/mnist_speedrun.py in PyTorch, eager, for a side-by-side
time to accuracy (issue 28): the same model (conv 5x5 16 - ReLU - max pool 2 - BN - conv
3x3 32 - ReLU - max pool 2 - BN - linear 128 - ReLU - linear 10, nothing padded), SGD with
Nesterov momentum 0.9 and weight decay 5e-4, OneCycleLR (peak 0.3, pct_start 0.25,
cycle_momentum=False), label smoothing 0.1, batches of 128 (last short one dropped), one
epoch, data held as one tensor. Prints
``test accuracy 0.9924, 9.78 s`` (seconds since process start, importing torch included).

    python bench/torch_speedrun.py --seed 0 [--device cuda] [--limit N]

MNIST is read from $XPNET_DATA_DIR/mnist (the same four IDX files xpnet reads) with gzip and
NumPy, so the timing does not include importing xpnet.
"""
import time

START = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy  # noqa: E402
import torch  # noqa: E402


def _idx(path, offset):
    with gzip.open(path, "rb") as f:
        return numpy.frombuffer(f.read(), numpy.uint8, offset=offset)


def mnist(limit=None):
    folder = Path(os.environ.get("XPNET_DATA_DIR", Path.home() / ".cache" / "xpnet")) / "mnist"
    out = []
    for split in ("train", "t10k"):
        x = _idx(folder / f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
        t = _idx(folder / f"{split}-labels-idx1-ubyte.gz", 8).astype(numpy.int64)
        x, t = (x[:limit], t[:limit]) if limit else (x, t)
        out.append((torch.from_numpy(x.astype(numpy.float32) / numpy.float32(255)), torch.from_numpy(t)))
    return out


def model(width=16, hidden=128):
    nn = torch.nn
    w1, w2 = width, 2 * width
    return nn.Sequential(
        nn.Conv2d(1, w1, 5), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(w1),
        nn.Conv2d(w1, w2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(w2),
        nn.Flatten(), nn.Linear(w2 * 5 * 5, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train(net, x, t, epochs, batch_size, lr, label_smoothing):
    """The recipe's training: Nesterov SGD under OneCycleLR, shuffled batches, the last short
    one dropped, on whatever device x and t are on."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = len(x) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(2, epochs * steps_per_epoch),
                                                pct_start=0.25, cycle_momentum=False)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), device=x.device)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[idx]), t[idx]).backward()
            opt.step()
            sched.step()


def accuracy(net, xt, tt):
    """Test accuracy, in batches of 1000."""
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(xt[i:i + 1000]).argmax(1) == tt[i:i + 1000]).sum()) for i in range(0, len(xt), 1000))
    return correct / len(xt)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    (x, t), (xt, tt) = mnist(args.limit)
    x, t, xt, tt = x.to(device), t.to(device), xt.to(device), tt.to(device)
    net = model(args.width, args.hidden).to(device)
    train(net, x, t, args.epochs, args.batch_size, args.lr, args.label_smoothing)
    print(f"test accuracy {accuracy(net, xt, tt):.4f}, {time.perf_counter() - START:.2f} s")


if __name__ == "__main__":
    main()
