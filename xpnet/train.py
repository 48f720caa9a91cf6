"""``fit`` and ``evaluate``: the book's training loop, on any device, with a progress bar.

The whole dataset is copied to the device once per ``fit`` (one counted copy per array);
each step gathers its batch on the device into a reused buffer. Per-step losses stay on
the device and are read back in chunks a few times per epoch, to update the progress
bar and stop on a NaN or infinite loss, so the training step itself copies nothing.

On CUDA, the step (forward, loss, backward, update, accuracy count) is recorded as a
CUDA graph the first time each batch size comes up (``backend.record``), and replayed
after that: one launch instead of about fifty, which is what a small network's step
costs on a GPU. The gather writes into the buffers the graph reads, so only the batch
changes between replays; the optimizer keeps its step count and rate on the device. On
sim the step is recorded and replayed the same way, under CUDA's rules, so CI proves a
recorded step trains exactly as the step-by-step one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time

import numpy

from . import _validate
from .device import Device, device_of, use_device
from .errors import ShapeError, TrainingError
from .nn.losses import SoftmaxCrossEntropy
from .transfer import array_or_host, to_device, to_host


@dataclasses.dataclass
class History:
    """What ``fit`` saw: the loss of every step, and per-epoch means and validation."""

    step_loss: list = dataclasses.field(default_factory=list)
    epoch_loss: list = dataclasses.field(default_factory=list)
    epoch_accuracy: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_accuracy: list = dataclasses.field(default_factory=list)
    epoch_seconds: list = dataclasses.field(default_factory=list)

    def plot(self, path, title: str = "training") -> str:
        """Write a PNG: loss per step with epoch means, and accuracy per epoch if known.

        Needs matplotlib (``pip install 'xpnet[plot]'``).
        """
        from .plot import plot_history
        return plot_history(self, path, title)


def _check_data(data, what):
    try:
        x, t = data
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a pair (x, t) of arrays, got {type(data).__name__}.") from None
    x, t = array_or_host(x, f"{what}: x"), array_or_host(t, f"{what}: t")
    if x.ndim == 0 or t.ndim == 0:
        raise ShapeError(f"{what}: x and t need one sample per row; got shapes {x.shape} and {t.shape}.")
    if len(x) != len(t):
        raise ShapeError(f"{what}: x has {len(x)} samples but t has {len(t)}.")
    if len(x) == 0:
        raise ShapeError(f"{what} is empty.")
    return x, t


def _labels(t):
    """Class indices from index or one-hot labels."""
    return t if t.ndim == 1 else t.argmax(axis=1)


class _LabelCheck:
    """Integer class labels checked once, before training or evaluation: a negative label
    fails at once (NumPy and CuPy would read -1 as the last class); the largest is checked
    against the model's output width on the first batch (a shape, so no device read)."""

    def __init__(self, t, what):
        self.what, self.top = what, None
        if t.ndim != 1 or t.dtype.kind not in "iu":
            return  # one-hot, soft or regression targets
        host = isinstance(t, numpy.ndarray)
        if host:
            low, high = t.min(), t.max()
        else:
            with use_device(device_of(t)):
                low, high = (int(v) for v in to_host((t.min(), t.max())))
        if low < 0:
            where = int(numpy.argmax((t if host else to_host(t)) < 0))
            raise ValueError(f"{what}: label {int(low)} at position {where} is not a class index; "
                             f"labels must be 0, 1, ..., classes-1. Fix or drop that sample.")
        self.top = int(high)
        self._t = t

    def against(self, classes: int) -> None:
        """Raise if the largest label is not below ``classes`` (the output's width)."""
        if self.top is not None and self.top >= classes:
            t = self._t if isinstance(self._t, numpy.ndarray) else to_host(self._t)
            where = int(numpy.argmax(t >= classes))
            raise ValueError(f"{self.what}: label {int(t[where])} at position {where} is not a class "
                             f"index for a model with {classes} outputs (valid: 0..{classes - 1}). "
                             f"Fix the labels, or give the last layer more outputs.")
        self.top = None  # checked: later batches skip it


class _Batches:
    """Batches of a device-resident dataset, gathered into buffers reused across steps
    (one pair per batch size, so a recorded step always reads the same two buffers)."""

    def __init__(self, x, t):
        self.x, self.t = x, t
        self.buffers = {}

    def gather(self, order, lo, hi, backend, into_buffers):
        if order is None and not into_buffers:
            return self.x[lo:hi], self.t[lo:hi]
        bufs = self.buffers.get(hi - lo)
        if bufs is None:
            xp = backend.xp
            bufs = self.buffers[hi - lo] = (
                xp.empty((hi - lo,) + self.x.shape[1:], dtype=self.x.dtype),
                xp.empty((hi - lo,) + self.t.shape[1:], dtype=self.t.dtype))
        if order is None:
            bufs[0][...] = self.x[lo:hi]
            bufs[1][...] = self.t[lo:hi]
            return bufs
        idx = order[lo:hi]
        return backend.gather_rows(self.x, idx, bufs[0]), backend.gather_rows(self.t, idx, bufs[1])


def _progress(total, desc, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a broken install only loses the bar
        return None
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=True,
                dynamic_ncols=True)


def fit(model, loss_fn, optimizer, data, epochs: int = 1, batch_size: int = 100,
        validation=None, device=None, shuffle: bool = True, seed=None, progress=None,
        graph: bool = True, drop_last: bool = False, schedule=None) -> History:
    """Train ``model`` on ``data = (x, t)``; returns a ``History``.

    ``device`` defaults to the model's; if given and different, the model is moved there
    (its optimizer state follows on the next step). ``progress`` shows a bar (default:
    when stderr is a terminal). Raises ``TrainingError`` naming the epoch and step where
    the loss stopped being finite. When ``batch_size`` does not divide the data, the last
    batch of each epoch is the short remainder; ``drop_last=True`` leaves it out (useful
    with BatchNorm, which cannot train on a batch of one). ``schedule`` (from
    ``xn.optim.schedules``) sets the learning rate after every epoch.

    ``graph``: on CUDA and sim, record the step and replay it (see the module's notes);
    ``graph=False`` runs every step kernel by kernel. A step through Dropout always runs
    kernel by kernel (its mask comes from a host-side generator), as does one with a loss
    function that does not declare ``graph_safe``.
    """
    x, t = _check_data(data, "fit data")
    epochs = _validate.integer("fit", "epochs", epochs)
    batch_size = _validate.integer("fit", "batch_size", batch_size)
    optimizer.check_model(model, "fit")
    labels = _LabelCheck(t, "fit data")
    if validation is not None:
        validation = _check_data(validation, "validation")
        _LabelCheck(validation[1], "validation")
    n = len(x)
    steps = n // batch_size if drop_last else math.ceil(n / batch_size)
    if steps == 0:
        raise ShapeError(f"fit: drop_last=True with batch_size={batch_size} leaves no batch of the "
                         f"{n} samples; use a batch_size of at most {n}.")
    device = model.device if device is None else Device(device)
    if model.device != device:
        model.to(device)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    history = History()
    log_every = max(1, steps // 10)
    rng = numpy.random.default_rng(seed)
    classify = getattr(loss_fn, "classification", False)
    record = graph and getattr(model, "graph_safe", False) and getattr(loss_fn, "graph_safe", False)
    with use_device(device):
        xp = device.xp
        batches = _Batches(*to_device((x, t), device))
        val = None if validation is None else to_device(validation, device)
        losses = xp.empty(steps, dtype=numpy.float32)
        correct = xp.zeros((), dtype=numpy.int64)
        replays = {}  # batch size -> the step as the device runs it (recorded where it records)
        last_good = _Snapshot(model, optimizer)

        def train_step(xb, tb):
            y = model.forward(xb)
            if classify:
                labels.against(y.shape[1])
            loss = loss_fn(y, tb)
            model.backward(loss_fn.backward())
            optimizer.step()
            if classify:
                xp.add(correct, (y.argmax(axis=1) == _labels(tb)).sum(), out=correct)
            return loss

        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            model.train()
            order = to_device(rng.permutation(n), device) if shuffle else None
            correct[...] = 0
            bar = _progress(steps, f"epoch {epoch}/{epochs}", show)
            read = 0
            for step in range(steps):
                lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                xb, tb = batches.gather(order, lo, hi, device.backend, into_buffers=record)
                if record:  # one recorded step per batch size, reading that size's batch buffers
                    run = replays.get(hi - lo)
                    if run is None:
                        run = replays[hi - lo] = device.backend.record(
                            functools.partial(train_step, xb, tb), owners=(model, loss_fn))
                    losses[step] = run()
                else:
                    losses[step] = train_step(xb, tb)
                if step + 1 - read >= log_every or step + 1 == steps:
                    chunk = to_host(losses[read:step + 1])
                    _check_finite(chunk, epoch, read, optimizer, last_good)
                    last_good.take(epoch, step + 1)
                    history.step_loss.extend(chunk.tolist())
                    if bar is not None:
                        bar.update(step + 1 - read)
                        bar.set_postfix(loss=f"{chunk.mean():.4f}", refresh=False)
                    read = step + 1
            history.epoch_loss.append(float(numpy.mean(history.step_loss[-steps:])))
            history.epoch_accuracy.append(float(to_host(correct)) / n if classify else None)
            if val is not None:
                result = evaluate(model, val, device=device, loss_fn=loss_fn)
                history.val_loss.append(result["loss"])
                history.val_accuracy.append(result["accuracy"])
            if schedule is not None:
                schedule.step()
            history.epoch_seconds.append(time.perf_counter() - start)
            if bar is not None:
                post = {"loss": f"{history.epoch_loss[-1]:.4f}"}
                if val is not None and history.val_accuracy[-1] is not None:
                    post["val_acc"] = f"{history.val_accuracy[-1]:.4f}"
                bar.set_postfix(post)
                bar.close()
    return history


class _Snapshot:
    """A device-side copy of the model's parameters and buffers and the optimizer's state,
    taken whenever fit has seen the losses so far are finite, so that a NaN leaves the
    model as it was after the last good step rather than holding NaN weights."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.copies, self.where = {}, "before the first step"
        self.take(None, 0)

    def _live(self):
        arrays = {f"param/{k}": v for k, v in self.model.params().items()}
        arrays.update({f"buffer/{k}": v for k, v in self.model.buffers().items()})
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.per_step_arrays().items()})
        return arrays

    def take(self, epoch, step):
        for name, live in self._live().items():
            copy = self.copies.get(name)
            if copy is None or copy.shape != live.shape or copy.dtype != live.dtype:
                copy = self.copies[name] = live.copy()
            else:
                copy[...] = live
        if epoch is not None:
            self.where = f"after step {step} of epoch {epoch}"

    def restore(self) -> str:
        for name, live in self._live().items():
            copy = self.copies.get(name)
            live[...] = 0 if copy is None else copy  # optimizer state born since: fresh
        return self.where


def _check_finite(chunk, epoch, first_step, optimizer, last_good):
    bad = numpy.flatnonzero(~numpy.isfinite(chunk))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        where = last_good.restore()
        raise TrainingError(
            f"the loss became {chunk[bad[0]]} at epoch {epoch}, step {step}. Training stopped, and the "
            f"model and optimizer were restored to where they were {where} (the last check with "
            f"finite losses). Try a smaller learning rate (lr={optimizer.lr}) or check the data "
            f"for NaN/inf.")


@contextlib.contextmanager
def _evaluating(model):
    """Eval mode on the model's device inside the block; the train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with use_device(model.device) as device:
            yield device
    finally:
        model.train(was_training)


def predict(model, x, batch_size: int = 1000):
    """The model's outputs for ``x`` in eval mode, batch by batch, as one array on the
    model's device (host input is copied there once). Move it with ``xn.to_host``."""
    batch_size = _validate.integer("predict", "batch_size", batch_size)
    x = array_or_host(x, "predict input")
    if x.ndim == 0 or len(x) == 0:
        raise ShapeError("predict got no samples (an input of length 0); pass at least one.")
    with _evaluating(model) as device:
        x = to_device(x, device)
        outputs = [model.forward(x[lo:lo + batch_size]) for lo in range(0, len(x), batch_size)]
        return device.xp.concatenate(outputs)


def evaluate(model, data, device=None, batch_size: int = 1000, loss_fn=None) -> dict:
    """Mean loss and accuracy of ``model`` on ``data = (x, t)`` in eval mode.

    ``loss_fn`` defaults to SoftmaxCrossEntropy; accuracy is None for a loss that is not
    a classification loss. The model's train/eval mode is restored afterwards.
    """
    x, t = _check_data(data, "evaluate data")
    batch_size = _validate.integer("evaluate", "batch_size", batch_size)
    labels = _LabelCheck(t, "evaluate data")
    device = model.device if device is None else Device(device)
    if model.device != device:
        raise ValueError(f"evaluate: the model is on {model.device}, not {device}; "
                         f"move it first with model.to('{device}').")
    loss_fn = SoftmaxCrossEntropy() if loss_fn is None else loss_fn
    classify = getattr(loss_fn, "classification", False)
    with _evaluating(model):
        xp = device.xp
        x, t = to_device((x, t), device)
        total = xp.zeros((), dtype=numpy.float64)
        correct = xp.zeros((), dtype=numpy.int64)
        for lo in range(0, len(x), batch_size):
            xb, tb = x[lo:lo + batch_size], t[lo:lo + batch_size]
            y = model.forward(xb)
            if classify:
                labels.against(y.shape[1])
            total += loss_fn(y, tb) * len(xb)
            if classify:
                correct += (y.argmax(axis=1) == _labels(tb)).sum()
        total, correct = to_host((total, correct))
    return {"loss": float(total) / len(x), "accuracy": float(correct) / len(x) if classify else None}
