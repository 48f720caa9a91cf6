"""Callbacks: what ``fit`` does besides the steps, as objects with hooks it calls
(Keras's names, Chainer's extensions). ``fit(..., callbacks=[...])`` runs yours after its
own: the NaN guard, validation, the schedule, the ``History`` and the progress bar.

Hooks run where the host already reads the losses (a few times an epoch, and at each
epoch's end), never inside the step, so a recorded step stays recorded and a fit with
callbacks trains bit for bit as one without. Each hook receives ``run``, the fit in
progress: ``run.model``, ``run.optimizer``, ``run.loss_fn``, ``run.schedule``,
``run.device``, ``run.epochs`` (the last epoch's number), ``run.initial_epoch`` (0, or the epoch
a resumed fit starts after), ``run.history``, ``run.parallel`` (``.chief`` is true on
the one process that writes files: rank 0) and ``run.stop_training`` (set it to end
training after this epoch).

In a distributed run every rank runs every callback with the same (global) figures, so
decisions taken on them agree. The callbacks that write files, ``ModelCheckpoint`` and
``CSVLogger``, are in ``writers``.
"""
from __future__ import annotations

import dataclasses
import math
import time

from .. import _validate


class Callback:
    """Base class: override the hooks you need; each gets ``run`` (see the module's notes).

    - ``on_train_begin(run)``: before the first step (parameters already on the device).
    - ``on_epoch_begin(run, epoch)``: epochs count from 1.
    - ``on_chunk_end(run, logs)``: after the host read a chunk of step losses (a few times an
      epoch): ``logs["epoch"]``, ``logs["step"]`` (steps done this epoch) and
      ``logs["losses"]`` (a host array, the chunk's losses, global in a distributed run).
    - ``on_epoch_end(run, logs)``: ``logs`` holds ``epoch``, ``loss``, ``accuracy`` (None for
      a loss that is not a classification loss), ``val_loss`` and ``val_accuracy`` (with
      ``validation=``) and ``seconds``; a callback may add entries for those after it.
    - ``on_train_end(run)``: after the last epoch (or the one a callback stopped at); not
      after an error.

    ``device_check(run)`` may return a 0-d device array to be read back with each chunk's
    losses, in the same copy; its host value is ``logs["check"]`` in this callback's
    ``on_chunk_end`` (the NaN guard counts non-finite arrays this way).
    """

    def on_train_begin(self, run):
        pass

    def on_epoch_begin(self, run, epoch):
        pass

    def device_check(self, run):
        return None

    def on_chunk_end(self, run, logs):
        pass

    def on_epoch_end(self, run, logs):
        pass

    def on_train_end(self, run):
        pass


@dataclasses.dataclass
class History(Callback):
    """What ``fit`` saw: the loss of every step, and per-epoch means and validation (the
    callback ``fit`` always runs, and returns)."""

    step_loss: list = dataclasses.field(default_factory=list)
    epoch_loss: list = dataclasses.field(default_factory=list)
    epoch_accuracy: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_accuracy: list = dataclasses.field(default_factory=list)
    epoch_seconds: list = dataclasses.field(default_factory=list)

    def plot(self, path, title: str = "training") -> str:
        """Write a PNG: loss per step with epoch means, and accuracy per epoch if known.

        Needs matplotlib (``pip install 'xpnet[plot]'``). In a distributed run only rank 0
        writes it.
        """
        from ..plot import plot_history
        return plot_history(self, path, title)

    def on_epoch_begin(self, run, epoch):
        self._started = time.perf_counter()

    def on_chunk_end(self, run, logs):
        self.step_loss.extend(logs["losses"].tolist())

    def on_epoch_end(self, run, logs):
        self.epoch_loss.append(logs["loss"])
        self.epoch_accuracy.append(logs["accuracy"])
        if "val_loss" in logs:
            self.val_loss.append(logs["val_loss"])
            self.val_accuracy.append(logs["val_accuracy"])
        logs["seconds"] = time.perf_counter() - self._started
        self.epoch_seconds.append(logs["seconds"])


class Validation(Callback):
    """Evaluates ``data`` after every epoch: ``logs["val_loss"]``, ``logs["val_accuracy"]``.
    With ``copy``, a pair is copied to the device once, before the first step."""

    def __init__(self, data, evaluate, copy=False):
        self.data, self.evaluate, self.copy = data, evaluate, copy

    def on_train_begin(self, run):
        if self.copy:
            from ..transfer import to_device
            self.data = to_device(self.data, run.device)

    def on_epoch_end(self, run, logs):
        result = self.evaluate(run.model, self.data, device=run.device, loss_fn=run.loss_fn,
                               distributed=run.parallel.size > 1)
        logs["val_loss"], logs["val_accuracy"] = result["loss"], result["accuracy"]


class ScheduleStep(Callback):
    """Calls ``schedule.step()`` after every epoch."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_end(self, run, logs):
        self.schedule.step()


class ProgressBar(Callback):
    """A tqdm bar per epoch, updated at every chunk (on the chief process only)."""

    def __init__(self, show: bool):
        self.show, self.bar = show, None

    def on_epoch_begin(self, run, epoch):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is a dependency; a broken install only loses the bar
            self.bar = None
            return
        self.bar = tqdm(total=len(run.source) or None, desc=f"epoch {epoch}/{run.epochs}", unit="step",
                        disable=not self.show, leave=True, dynamic_ncols=True)

    def on_chunk_end(self, run, logs):
        if self.bar is not None:
            self.bar.update(len(logs["losses"]))
            self.bar.set_postfix(loss=f"{logs['losses'].mean():.4f}", refresh=False)

    def on_epoch_end(self, run, logs):
        if self.bar is not None:
            post = {"loss": f"{logs['loss']:.4f}"}
            if logs.get("val_accuracy") is not None:
                post["val_acc"] = f"{logs['val_accuracy']:.4f}"
            self.bar.set_postfix(post)
            self.bar.close()


class _Monitor:
    """A figure of the epoch's logs, and whether a new value improves on the best so far
    (lower for a loss, higher for an accuracy, by more than ``min_delta``)."""

    def __init__(self, owner, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"{owner}: monitor must be the name of a figure of the epoch's logs, such as "
                            f"'val_loss', 'loss' or 'val_accuracy', got {type(monitor).__name__} {monitor!r}.")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.owner, self.monitor, self.mode = owner, monitor, mode
        self.min_delta = _validate.real(owner, "min_delta", min_delta, low=0)
        self.best = None

    def check(self, run) -> None:
        """Refuse, before the first step, a ``val_`` figure in a fit that has no validation."""
        if self.monitor.startswith("val_") and not any(isinstance(cb, Validation) for cb in run.callbacks):
            raise ValueError(f"{self.owner}: monitor={self.monitor!r}, but this fit has no validation=, so "
                             f"no epoch has that figure. Pass validation=(x_val, t_val) to fit, or monitor "
                             f"'loss' (or 'accuracy').")

    def value(self, logs) -> float:
        value = logs.get(self.monitor)
        if value is None:
            known = sorted(k for k, v in logs.items() if v is not None and k != "epoch")
            hint = " (val_ figures need fit(..., validation=(x, t)))" if self.monitor.startswith("val_") else ""
            raise ValueError(f"{self.owner}: monitor={self.monitor!r} is not among this epoch's figures "
                             f"{known}{hint}. Monitor one of those.")
        return float(value)

    def improved(self, value) -> bool:
        """Whether ``value`` beats the best so far (NaN never does); if so it becomes the best."""
        if math.isnan(value):
            return False
        better = (self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                        else value > self.best + self.min_delta))
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    An improvement is a value lower (``mode="min"``; ``"auto"`` picks max for a name with
    "acc" in it) than the best so far by more than ``min_delta``. ``patience=0`` stops at
    the first epoch without one. With ``restore_best`` (the default) the model ends training
    with the parameters and buffers of its best epoch (kept as copies on the device; the
    optimizer's state is not rolled back). ``stopped_epoch`` and ``best_epoch`` say what
    happened (None: it never stopped / never saw a value)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 restore_best: bool = True, mode: str = "auto"):
        self.patience = _validate.integer("EarlyStopping", "patience", patience, minimum=0)
        self.monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.restore_best = bool(restore_best)

    def on_train_begin(self, run):
        self.monitor.check(run)
        self.monitor.best, self.wait, self.best_epoch, self.stopped_epoch = None, 0, None, None
        self.epoch, self.best_weights = None, None

    def on_epoch_end(self, run, logs):
        self.epoch = logs["epoch"]
        if self.monitor.improved(self.monitor.value(logs)):
            self.wait, self.best_epoch = 0, self.epoch
            if self.restore_best:
                self.best_weights = copy_arrays(model_arrays(run.model), self.best_weights)
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch, run.stop_training = self.epoch, True

    def on_train_end(self, run):
        if self.restore_best and self.best_weights is not None and self.best_epoch != self.epoch:
            for name, live in model_arrays(run.model).items():
                live[...] = self.best_weights[name]


def model_arrays(model) -> dict:
    """The model's parameters and buffers, live, by ``param/`` and ``buffer/`` names."""
    return {**{f"param/{k}": v for k, v in model.params().items()},
            **{f"buffer/{k}": v for k, v in model.buffers().items()}}


def copy_arrays(live: dict, copies=None) -> dict:
    """Device copies of the ``live`` arrays, written into ``copies`` where it already has an
    array of the same shape and dtype (no new allocation), else new."""
    copies = {} if copies is None else copies
    for name, array in live.items():
        kept = copies.get(name)
        if kept is not None and kept.shape == array.shape and kept.dtype == array.dtype:
            kept[...] = array
        else:
            copies[name] = array.copy()
    return copies


__all__ = ["Callback", "EarlyStopping", "History"]  # ModelCheckpoint, CSVLogger: writers.py
