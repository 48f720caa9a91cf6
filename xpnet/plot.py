"""PNG plots of training, with matplotlib (the ``plot`` extra), imported only when plotting.

The figures are matplotlib ``Figure`` objects of their own, not pyplot's: plotting leaves
the caller's backend (a notebook's inline one) and pyplot's open figures as they were, and
a figure that fails halfway is simply dropped."""
from __future__ import annotations

import os
from pathlib import Path


def _figure(**kwargs):
    """A new matplotlib Figure (``figsize=``...), drawn by Agg when saved, with no display."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'xpnet[plot]'") from None
    return Figure(**kwargs)


def _write(fig, path) -> str:
    """Save the figure atomically (a temporary file renamed over ``path``: a failure leaves
    the old file), on rank 0 only in a distributed run (the ranks agree), and return the
    path of the file written. A path whose suffix names no format matplotlib writes
    ("curve", "run.final") gets ".png" added, as matplotlib adds it to a bare name: the
    path returned is always the file's."""
    from . import distributed
    from ._files import write_atomically
    path = Path(path)
    formats = fig.canvas.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        path = path.with_name(path.name + ".png")
    if not distributed.launched() or distributed.rank() == 0:
        target = Path(os.path.realpath(path))
        write_atomically(target, lambda f: fig.savefig(f, format=path.suffix[1:].lower(), dpi=110))
    return str(path)


def _loss_scale(*series) -> str:
    """"log" when every finite loss is positive (the usual cross-entropy curve), else
    "linear": a log axis cannot show a zero or negative loss (a log-likelihood), and
    matplotlib would draw an empty panel."""
    import numpy
    values = numpy.concatenate([numpy.asarray(v, dtype=float).ravel() for v in series if v is not None and len(v)]
                               or [numpy.zeros(0)])
    values = values[numpy.isfinite(values)]
    return "log" if values.size and (values > 0).all() else "linear"


def plot_history(history, path, title="training") -> str:
    """Loss per step (and epoch means), accuracy per epoch when known."""
    has_acc = any(a is not None for a in history.epoch_accuracy + history.val_accuracy)
    fig = _figure(figsize=(11 if has_acc else 6, 4))
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
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
    ax.set(xlabel="step", ylabel="loss", title=f"{title}: loss",
           yscale=_loss_scale(history.step_loss, history.epoch_loss, history.val_loss))
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
    return _write(fig, path)


def plot_regression(x, y_true, y_pred, losses, path, title="regression") -> str:
    """Fitted curve against the target, and the loss curve."""
    fig = _figure(figsize=(11, 4))
    a, b = fig.subplots(1, 2)
    order = x.ravel().argsort()
    a.plot(x.ravel()[order], y_true.ravel()[order], label="target", lw=2)
    a.plot(x.ravel()[order], y_pred.ravel()[order], "--", label="model", lw=2)
    a.set(xlabel="x", ylabel="y", title=f"{title}: fit")
    a.legend()
    b.plot(range(1, len(losses) + 1), losses, lw=0.7)
    b.set(xlabel="step", ylabel="loss", yscale=_loss_scale(losses), title=f"{title}: loss")
    fig.tight_layout()
    return _write(fig, path)


def plot_filters(W, path, title="first-layer filters") -> str:
    """Conv filters (out, in, kh, kw) as a grid of grey images (the book's Fig. 7-24)."""
    n = W.shape[0]
    cols = min(10, n)
    rows = -(-n // cols)
    fig = _figure(figsize=(cols, rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(W[i, 0], cmap="gray_r", interpolation="nearest")
    fig.suptitle(title)
    return _write(fig, path)
