"""``fit``: epochs of steps. Everything else it does is a collaborator: a source of
batches (``sources``), the step (``step``), one process or many (``parallel``), and
callbacks (the NaN guard, validation, the schedule, the history, the progress bar, then
the caller's).

Per-step losses stay on the device and are read back in chunks a few times per epoch
(with any ``device_check`` of a callback, in the same read); the callbacks' chunk hooks
run there, so the training step itself copies nothing and a recorded step stays recorded.
"""
from __future__ import annotations

import contextlib
import sys

import numpy

from .. import _validate
from ..device import Device, use_device
from ..transfer import to_host
from .callbacks import Callback, History, ProgressBar, ScheduleStep, Validation
from .guard import NaNGuard
from .inference import evaluate
from .loader import Loader
from .parallel import processes
from .sources import InMemory, LabelCheck, Streamed, check_pair, is_batches, refuse_read_once, training_source
from .step import TrainStep


class Run:
    """The fit in progress, as callbacks see it (see ``xpnet.training.callbacks``)."""

    def __init__(self, **parts):
        self.stop_training = False
        self.__dict__.update(parts)

    def each(self, hook, *args, logs_for=None):
        """Every callback's ``hook``, watched as one round: a recorded step that baked in what
        one of them changed (a callback of yours; a schedule's step) is recorded again.
        ``logs_for(callback)``: the logs each callback gets, where they differ."""
        def round_():
            for callback in self.callbacks:
                getattr(callback, hook)(self, *(args if logs_for is None else (logs_for(callback),)))
        self.step.watched(round_)


def fit(model, loss_fn, optimizer, data, epochs: int = 1, batch_size: int = 100,
        validation=None, device=None, shuffle: bool = True, seed=None, progress=None,
        graph: bool = True, drop_last: bool = False, schedule=None, stream=None,
        distributed=None, transform=None, callbacks=None, initial_epoch: int = 0) -> History:
    """Train ``model``; returns a ``History``.

    ``data`` is a pair ``(x, t)`` of arrays (memory-maps, nested lists of numbers included)
    or an iterable of host batches ``(xb, tb)``: a list, an ``xn.data.Loader``, or a
    generator (one epoch only). A pair is copied to the device once, unless ``stream=True``,
    or ``stream=None`` (the default) and it takes more than half of the device's free
    memory: then it is read in host batches, each copied to the device a step ahead.
    ``batch_size``, ``shuffle``, ``seed`` (None: xpnet's generator, which ``xn.seed(n)``
    reseeds) and ``drop_last`` (leave out a short last batch) apply to a pair; an iterable
    brings its own. ``validation`` (a pair, or batches; not a generator when ``epochs > 1``)
    is evaluated after every epoch.

    ``device`` defaults to the model's; if given and different, the model is moved there.
    ``progress`` shows a bar (default: when stderr is a terminal). ``schedule`` (from
    ``xn.optim.schedules``, built for ``optimizer``) sets the rate after every epoch.
    ``transform(xb, tb) -> (xb, tb)`` runs on the device inside the step (device operations
    only; a host-side one goes in an ``xn.data.Loader``). ``callbacks``: ``xn.callbacks``
    objects (``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``, your own ``Callback``),
    run after fit's own at each epoch's end and where the losses are read.

    ``initial_epoch`` (Keras's meaning) resumes a run that stopped after that epoch: fit
    trains epochs ``initial_epoch + 1`` to ``epochs`` and numbers them so (a checkpoint's
    ``{epoch}``, a log's rows), and a shuffled pair (or Loader) takes the orders the stopped
    run would have taken next. Load the checkpoint first (``xn.load(..., optimizer=,
    schedule=)``), after the same ``xn.seed`` as the first run.

    Raises ``TrainingError`` naming the epoch and step where the loss, or a parameter,
    gradient or optimizer state, stopped being finite (checked with the losses, a few times
    an epoch); the model and optimizer are then put back as they were at the last check that
    found everything finite, and the message says which.

    ``graph``: on CUDA and sim, record the step and replay it (``xpnet.training.step``);
    ``graph=False``, a loss that does not declare ``graph_safe`` or a layer that declares it
    False run it kernel by kernel.

    ``distributed`` (default: whether ``mpiexec`` launched more than one rank): train data
    parallel. Every rank runs this same call; rank r takes the r-th of ``size`` contiguous
    parts of every global batch, gradients are averaged across ranks weighted by part size
    (the single-process step's), losses and accuracies are the global batch's, and only rank
    0 shows progress. BatchNorm normalises each rank's part by itself and Dropout draws per
    rank. Distributed steps are not recorded. Before the first step the ranks compare their
    numbers of samples and steps (and validation samples) and raise ``ShapeError`` if they
    differ.
    """
    run = _plan(model, loss_fn, optimizer, data, locals())  # the arguments by name
    with use_device(run.device):
        _start(run)
        for epoch in range(run.initial_epoch + 1, run.epochs + 1):
            _train_epoch(run, epoch)
            if run.stop_training:
                break
        run.each("on_train_end")
    return run.history


def _plan(model, loss_fn, optimizer, data, args) -> Run:
    """Every check before the first step (arguments, data, ranks), and the fit's parts."""
    epochs = _validate.integer("fit", "epochs", args["epochs"])
    initial_epoch = _validate.integer("fit", "initial_epoch", args["initial_epoch"], minimum=0)
    if initial_epoch >= epochs:
        raise ValueError(f"fit: initial_epoch={initial_epoch} leaves no epoch to train with epochs={epochs}, the "
                         f"last epoch's number (Keras's meaning). To train n more epochs after epoch "
                         f"{initial_epoch}, pass epochs={initial_epoch} + n.")
    batch_size = _validate.integer("fit", "batch_size", args["batch_size"])
    optimizer.check_model(model, "fit")
    _check_schedule(args["schedule"], optimizer)
    device = model.device if args["device"] is None else Device(args["device"])
    parallel, labels = processes(args["distributed"]), LabelCheck()
    source = training_source(data, labels, device, batch_size, args["shuffle"], args["seed"], args["drop_last"],
                             args["stream"], parallel.size, epochs - initial_epoch)
    source.split = parallel.part
    if isinstance(source, Streamed):
        source.agree = parallel.agree
    validation = _check_validation(args["validation"], epochs - initial_epoch, labels)
    parallel.check_sizes("fit", lambda: _sizes(source, validation))
    if model.device != device:
        model.to(device)
    progress = args["progress"]
    show = (sys.stderr.isatty() if progress is None else bool(progress)) and parallel.chief
    step = TrainStep(model, loss_fn, optimizer, parallel, labels, args["transform"], args["graph"])
    history = History()
    built_in = [NaNGuard()]
    if validation is not None:
        data_once = isinstance(source, InMemory) and not is_batches(validation)  # copied once, like the set
        built_in.append(Validation(validation, evaluate, copy=data_once))
    if args["schedule"] is not None:
        built_in.append(ScheduleStep(args["schedule"]))
    built_in += [history, ProgressBar(show)]
    return Run(model=model, loss_fn=loss_fn, optimizer=optimizer, schedule=args["schedule"], device=device,
               epochs=epochs, initial_epoch=initial_epoch, parallel=parallel, source=source, step=step,
               history=history, validation=validation,
               callbacks=built_in + _user_callbacks(args["callbacks"]))


def _start(run) -> None:
    """Before the first epoch: the set (if it fits) on the device, every rank's model alike,
    the buffer the losses are read through, and each callback's ``on_train_begin``."""
    if isinstance(run.source, InMemory):
        run.source.to(run.device)  # the one copy of the set
    for _ in range(run.initial_epoch):  # a resumed run's shuffles: those the stopped run would take next,
        run.source.skip(1)              # in its order (a shuffled validation Loader may draw from the
        if isinstance(run.validation, Loader):  # same generator, after each epoch's training)
            run.validation.skip(1)
    run.step.start(run.device)
    run.parallel.start(run.model, run.optimizer)
    run.chunk = max(1, len(run.source) // 10) if len(run.source) else 50
    # the chunk's losses, and a slot for each callback's device_check
    run.slots = run.device.xp.empty(run.chunk + len(run.callbacks), dtype=numpy.float32)
    run.each("on_train_begin")


def _train_epoch(run, epoch) -> None:
    run.step.watched(run.model.train)  # after a callback's eval(): the train-mode step, recorded again
    run.step.new_epoch()
    run.each("on_epoch_begin", epoch)
    reader = _LossReader(run, epoch)
    # closed on the way out, an exception included: a read-ahead thread stops with it
    with contextlib.closing(run.source.batches(run.device.backend, epoch)) as batches:
        for xb, tb, share, total in batches:
            reader.add(run.step.run(xb, tb, share), total)
    reader.flush()
    if reader.steps == 0:
        raise ValueError(f"fit: epoch {epoch} had no batches: the data iterable was exhausted (a generator runs "
                         f"once). For more epochs pass a list of batches or an xn.data.Loader.")
    hits = run.parallel.sum(run.step.hits())
    # the epoch's loss is the mean over its samples, as evaluate's: a short last batch weighs less
    loss = float(numpy.dot(reader.losses, reader.samples) / numpy.sum(reader.samples))
    run.each("on_epoch_end", {"epoch": epoch, "loss": loss,
                              "accuracy": float(hits[0]) / reader.seen if run.step.classify else None})


class _LossReader:
    """The step losses of an epoch, left on the device and read a chunk at a time; each
    read runs the callbacks' ``on_chunk_end``."""

    def __init__(self, run, epoch):
        self.run, self.epoch = run, epoch
        self.pending, self.steps, self.seen, self.losses, self.samples = 0, 0, 0, [], []

    def add(self, loss, samples):
        self.run.slots[self.pending] = loss
        self.samples.append(samples)
        self.pending, self.steps, self.seen = self.pending + 1, self.steps + 1, self.seen + samples
        if self.pending == self.run.chunk:
            self.flush()

    def flush(self):
        run, k = self.run, self.pending
        if not k:
            return
        checks = [(cb, cb.device_check(run)) for cb in run.callbacks]
        checks = [(cb, value) for cb, value in checks if value is not None]
        for i, (_, value) in enumerate(checks):
            run.slots[k + i] = value
        values = run.parallel.sum(to_host(run.slots[:k + len(checks)]))  # one read: losses and checks
        self.pending, losses = 0, values[:k]
        self.losses.extend(losses.tolist())
        logs = {"epoch": self.epoch, "step": self.steps, "losses": losses}
        checked = {id(cb): v for (cb, _), v in zip(checks, values[k:].tolist())}
        run.each("on_chunk_end", logs_for=lambda cb: {**logs, "check": checked[id(cb)]} if id(cb) in checked else logs)


def _check_validation(validation, epochs, labels):
    """``validation`` checked (a pair, or batches that can be read each epoch); a pair's labels
    go to ``labels``, fit's check, so that a label the model has no output for is named at the
    first step, not after the first epoch."""
    if validation is None:
        return None
    if is_batches(validation):
        refuse_read_once(validation, epochs, "validation=", f"evaluates it after each of its {epochs} epochs")
        return validation
    validation = check_pair(validation, "validation")
    labels.add(validation[1], "validation")
    return validation


def _sizes(source, validation) -> dict:
    """What every rank must agree on: its numbers of samples, steps and validation samples."""
    samples, steps = source.sizes()
    sizes = {"samples": samples, "steps": steps}
    if validation is not None and not is_batches(validation):
        sizes["validation samples"] = len(validation[0])
    return sizes


def _user_callbacks(callbacks) -> list:
    callbacks = [] if callbacks is None else list(callbacks)
    for k, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"fit: callbacks[{k}] is a {type(callback).__name__}, not an xn.callbacks.Callback; "
                            f"pass instances such as xn.callbacks.EarlyStopping(), or subclass Callback.")
    return callbacks


def _check_schedule(schedule, optimizer):
    """Refuse a schedule that would set another optimizer's rate (and leave this one's as is)."""
    if schedule is None:
        return
    if not callable(getattr(schedule, "step", None)):
        raise TypeError(f"fit: schedule= must be a schedule from xn.optim.schedules (something with a step() "
                        f"method fit calls after each epoch), got {type(schedule).__name__}.")
    owner = getattr(schedule, "optimizer", optimizer)
    if owner is not optimizer:
        raise ValueError(
            f"fit: the schedule {type(schedule).__name__} was built for another optimizer (a "
            f"{type(owner).__name__} with lr={owner.lr}), not for the {type(optimizer).__name__} that fit "
            f"trains with (lr={optimizer.lr}); it would change the other optimizer's rate and leave this "
            f"one's as it is. Build it for this one: {type(schedule).__name__}(optimizer, ...).")
