"""PyTorch eager doing what ``examples/mnist_cnn.py`` does, for issue 15's whole-process
comparison (a reference only; xpnet never depends on PyTorch):

    time python examples/mnist_cnn.py --epochs 1 [--model deep]
    time python bench/torch_mnist_cnn.py --epochs 1 [--model deep]

Same data (xpnet's MNIST loader, so reading the files costs both the same), same model
(the book's SimpleConvNet, or with ``--model deep`` its DeepConvNet), Adam 1e-3, batch
100, shuffled each epoch, the test set evaluated after every epoch and once more at the
end, the weights saved, the training curve plotted, and as many threads as NumPy's BLAS
uses.
"""
import argparse
import time
from pathlib import Path

import xpnet as xn


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["simple", "deep"], default="simple")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", default="out/torch_mnist_cnn")
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_info
    torch.set_num_threads(next(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
    torch.manual_seed(0)
    (x, t), (xt, tt) = xn.datasets.mnist(flatten=False)
    x, t, xt, tt = (torch.from_numpy(a) for a in (x, t, xt, tt))
    nn = torch.nn
    if args.model == "deep":
        from models import _torch_deep_convnet  # bench/models.py: the one PyTorch DeepConvNet
        model = _torch_deep_convnet(torch)
    else:
        model = nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def evaluate():
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(xt[i:i + 1000]).argmax(1) == tt[i:i + 1000]).sum())
                          for i in range(0, len(xt), 1000))
        model.train()
        return correct / len(xt)

    losses = []
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), t[idx])
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        evaluate()
    seconds = time.perf_counter() - start
    print(f"torch cpu: {args.epochs} epochs in {seconds:.1f} s; test accuracy {evaluate():.4f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot(torch.stack(losses).numpy())
    fig.savefig(out / "training.png")
    print("plot:", out / "training.png")


if __name__ == "__main__":
    main()
