"""PNG plots of training, with matplotlib (the ``plot`` extra), imported only when plotting."""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'xpnet[plot]'") from None
    matplotlib.use("Agg")  # files only: works with no display
    import matplotlib.pyplot as plt
    return plt


def _write(plt, fig, path) -> str:
    """Save the figure as a PNG, on rank 0 only in a distributed run (the ranks agree)."""
    from . import distributed
    if not distributed.launched() or distributed.rank() == 0:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(Path(path))


def plot_history(history, path, title="training") -> str:
    """Loss per step (and epoch means), accuracy per epoch when known."""
    plt = _pyplot()
    has_acc = any(a is not None for a in history.epoch_accuracy + history.val_accuracy)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4), squeeze=False)
    ax = axes[0][0]
    steps = len(history.step_loss)
    epochs = len(history.epoch_loss)
    ax.plot(range(1, steps + 1), history.step_loss, lw=0.6, alpha=0.5, label="step loss")
    if epochs:
        per = steps / epochs
        ends = [per * (i + 1) for i in range(epochs)]
        ax.plot(ends, history.epoch_loss, "o-", label="epoch mean")
        if history.val_loss:
            ax.plot(ends, history.val_loss, "s--", label="validation")
    ax.set(xlabel="step", ylabel="loss", title=f"{title}: loss", yscale="log")
    ax.legend()
    if has_acc:
        ax = axes[0][1]
        xs = range(1, epochs + 1)
        if any(a is not None for a in history.epoch_accuracy):
            ax.plot(xs, history.epoch_accuracy, "o-", label="train")
        if history.val_accuracy:
            ax.plot(xs, history.val_accuracy, "s--", label="validation")
        ax.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy")
        ax.legend()
    fig.tight_layout()
    return _write(plt, fig, path)


def plot_regression(x, y_true, y_pred, losses, path, title="regression") -> str:
    """Fitted curve against the target, and the loss curve."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    order = x.ravel().argsort()
    a.plot(x.ravel()[order], y_true.ravel()[order], label="target", lw=2)
    a.plot(x.ravel()[order], y_pred.ravel()[order], "--", label="model", lw=2)
    a.set(xlabel="x", ylabel="y", title=f"{title}: fit")
    a.legend()
    b.plot(range(1, len(losses) + 1), losses, lw=0.7)
    b.set(xlabel="step", ylabel="loss", yscale="log", title=f"{title}: loss")
    fig.tight_layout()
    return _write(plt, fig, path)


def plot_filters(W, path, title="first-layer filters") -> str:
    """Conv filters (out, in, kh, kw) as a grid of grey images (the book's Fig. 7-24)."""
    plt = _pyplot()
    n = W.shape[0]
    cols = min(10, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(W[i, 0], cmap="gray_r", interpolation="nearest")
    fig.suptitle(title)
    return _write(plt, fig, path)
