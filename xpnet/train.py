"""``fit`` and ``evaluate``: the book's training loop, on any device, with a progress bar.

A dataset that fits on the device is copied there once per ``fit`` (one counted copy per
array); each step gathers its batch on the device into a reused buffer. A larger one (or
any iterable of host batches, an ``xn.data.Loader``, a generator) streams: each batch is
copied into the step's buffers just before the step. Per-step losses stay on
the device and are read back in chunks a few times per epoch, to update the progress
bar and stop on a NaN or infinite loss; the same read brings a count, made on the device,
of parameters, gradients and optimizer states that are not finite, so the training
step itself copies nothing.

On CUDA, the step (forward, loss, backward, update, accuracy count) is recorded as a
CUDA graph the first time each batch size comes up (``backend.record``), and replayed
after that: one launch instead of about fifty, which is what a small network's step
costs on a GPU. The gather writes into the buffers the graph reads, so only the batch
changes between replays; the optimizer keeps its step count and rate on the device. On
sim the step is recorded and replayed the same way, under CUDA's rules, so CI proves a
recorded step trains exactly as the step-by-step one.
"""
from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import functools
import math
import sys
import time

import numpy

from . import _validate
from . import distributed as dist
from .data import Loader, read_ahead
from .device import Device, device_of, use_device
from .errors import ShapeError, TrainingError
from .nn.init import generator
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

        Needs matplotlib (``pip install 'xpnet[plot]'``). In a distributed run only rank 0
        writes it.
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
    """Integer class labels, checked on the host before they are used: a negative label
    fails at once (NumPy and CuPy would read -1 as the last class); labels above the
    model's output width fail at the first step, when the width is known (a shape, no
    device read), and in every later batch that is added."""

    def __init__(self):
        self.classes, self.pending = None, []

    def add(self, t, what, offset=0):
        """Check the labels ``t`` (host or device; ``offset`` numbers their positions)."""
        if t.ndim != 1 or t.dtype.kind not in "iu" or len(t) == 0:
            return  # one-hot, soft or regression targets
        host = isinstance(t, numpy.ndarray)
        if host:
            low, high = int(t.min()), int(t.max())
        else:
            with use_device(device_of(t)):
                low, high = (int(v) for v in to_host((t.min(), t.max())))
        if low < 0:
            where = int(numpy.argmax((t if host else to_host(t)) < 0))
            raise ValueError(f"{what}: label {low} at position {offset + where} is not a class index; "
                             f"labels must be 0, 1, ..., classes-1. Fix or drop that sample.")
        self.pending.append((t, what, offset, high))
        if self.classes is not None:
            self.against(self.classes)

    def against(self, classes: int) -> None:
        """Raise if a label is not below ``classes`` (the output's width)."""
        self.classes = classes
        for t, what, offset, high in self.pending:
            if high >= classes:
                t = t if isinstance(t, numpy.ndarray) else to_host(t)
                where = int(numpy.argmax(t >= classes))
                raise ValueError(f"{what}: label {int(t[where])} at position {offset + where} is not a "
                                 f"class index for a model with {classes} outputs (valid: 0..{classes - 1}). "
                                 f"Fix the labels, or give the last layer more outputs.")
        self.pending = []


def _streamed(data) -> bool:
    """Whether ``data`` is a source of batches (a Loader, a generator, a list of ``(xb, tb)``
    batches) rather than a pair (x, t) of arrays or of nested lists or tuples of numbers.

    A list or tuple of two items is a pair when both are array-likes of one length, as
    ``(((0., 0.), (0., 1.)), (0, 1))`` (x of shape (2, 2), t of shape (2,)), unless its first
    item is ``(xb, tb)`` holding arrays; it is two batches when each item could be a batch
    (two array-likes of at least one dimension). Longer ones are batches when their first
    item could be one. Anything else is read as a pair, so ``_check_data`` says what is
    wrong with it. (Two batches of nested lists whose x and t have the same shape read as a
    pair, and so does an x of two row arrays: give batches as arrays.)"""
    if isinstance(data, (tuple, list)):
        if len(data) == 0 or not isinstance(data[0], (tuple, list)):
            return False
        if len(data) == 2:
            if len(data[0]) == 2 and any(hasattr(v, "shape") for v in data[0]):
                return True  # (xb, tb) of arrays: a batch
            x, t = (_numeric_shape(v) for v in data)
            if x and t and x[0] == t[0]:
                return False
            return _batch_like(data[0]) and _batch_like(data[1])
        return _batch_like(data[0])
    return hasattr(data, "__iter__") and not hasattr(data, "shape")


def _numeric_shape(obj):
    """The shape of an array, or of what ``numpy.asarray`` makes of ``obj`` if that holds
    numbers; None for anything else (ragged lists, strings)."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return obj.shape
    try:
        array = numpy.asarray(obj)
    except (TypeError, ValueError):
        return None
    return array.shape if array.dtype.kind in "biuf" else None


def _batch_like(item) -> bool:
    """Whether ``item`` could be one batch ``(xb, tb)``: two array-likes of at least one dimension."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        return False
    return all(_numeric_shape(v) for v in item)


class _Batches:
    """Batches of a dataset copied to the device once, gathered into buffers reused across
    steps (one pair per batch size, so a recorded step always reads the same two)."""

    ranks = None  # (rank, size) in a distributed run: each rank takes its part of a batch

    def __init__(self, x, t, batch_size, shuffle, seed, drop_last):
        self.x, self.t, self.batch_size, self.shuffle = x, t, batch_size, shuffle
        self.rng = generator(seed)  # seed=None: xpnet's generator, which xn.seed(n) reseeds
        n = len(x)
        self.steps = n // batch_size if drop_last else math.ceil(n / batch_size)
        self.buffers = {}

    def __len__(self):
        return self.steps

    def to(self, device):
        self.x, self.t = to_device((self.x, self.t), device)

    def batches(self, backend, epoch):
        n = len(self.x)
        order = to_device(self.rng.permutation(n)) if self.shuffle else None
        for step in range(self.steps):
            lo, hi = step * self.batch_size, min(n, (step + 1) * self.batch_size)
            total = hi - lo
            if self.ranks is not None:
                start, stop = _rank_part(total, self.ranks)
                lo, hi = lo + start, lo + stop
            bufs = self.buffers.get(hi - lo)
            if bufs is None:
                xp = backend.xp
                bufs = self.buffers[hi - lo] = (
                    xp.empty((hi - lo,) + self.x.shape[1:], dtype=self.x.dtype),
                    xp.empty((hi - lo,) + self.t.shape[1:], dtype=self.t.dtype))
            if order is None:
                bufs[0][...] = self.x[lo:hi]
                bufs[1][...] = self.t[lo:hi]
                batch = bufs
            else:
                idx = order[lo:hi]
                batch = backend.gather_rows(self.x, idx, bufs[0]), backend.gather_rows(self.t, idx, bufs[1])
            yield batch if self.ranks is None else (*batch, (hi - lo) / total, total)


class _Stream:
    """Host batches streamed to the device, one ahead: the copy of batch k+1 is issued (on a
    copy stream, from page-locked memory, on CUDA) before step k is queued, and step k waits
    for its own batch's copy only. Each batch shape has two pairs of device buffers that
    batches take in turn, so a copy never overwrites what a queued step still reads (the
    copy into a pair waits for the step that used it last). The recorded steps read these
    buffers, one recording per pair."""

    ranks = None  # (rank, size) in a distributed run: each rank takes its part of a batch

    def __init__(self, source, labels):
        self.source, self.labels = source, labels
        self.slots = {}  # batch shapes and dtypes -> two [x buffer, t buffer, event of last step]

    def __len__(self):
        return len(self.source) if hasattr(self.source, "__len__") else 0

    def _host_batches(self, epoch, ahead):
        # A Loader reads host arrays only, so its batches can be read on another thread
        # (a user's generator stays on this one: it may use this thread's device scope).
        reading = read_ahead(self.source) if ahead and isinstance(self.source, Loader) else None
        try:
            yield from self._checked(epoch, self.source if reading is None else reading)
        finally:  # on an error here too, which a kept traceback would otherwise leave reading
            if reading is not None:
                reading.close()

    def _checked(self, epoch, source):
        for k, batch in enumerate(source):
            xb, tb = _batch(batch, f"fit data, batch {k}")
            self.labels.add(tb, f"fit data, epoch {epoch}, batch {k}")
            total = len(xb)
            if self.ranks is not None:  # this rank's contiguous part of the global batch
                size = self.ranks[1]
                if total < size:
                    raise ShapeError(f"fit data, batch {k}: {total} samples for {size} ranks; every batch "
                                     f"needs at least one sample a rank (drop_last=True drops a short one).")
                part = slice(*_rank_part(total, self.ranks))
                xb, tb = xb[part], tb[part]
            yield xb, tb, total

    def _start(self, backend, batch, turn):
        """Issue the copies of ``batch`` into its shape's buffer pair for ``turn``."""
        xb, tb, total = batch
        key = (xb.shape, xb.dtype.str, tb.shape, tb.dtype.str)
        pairs = self.slots.get(key)
        if pairs is None:
            xp = backend.xp
            pairs = self.slots[key] = [[xp.empty(xb.shape, dtype=xb.dtype), xp.empty(tb.shape, dtype=tb.dtype),
                                        None] for _ in range(2)]
        pair = pairs[turn % 2]
        events = []
        for array, buf in zip((xb, tb), pair[:2]):
            if isinstance(array, numpy.ndarray):
                events.append(backend.upload_async(array, buf, after=pair[2]))
            else:  # already on the device: copied on the compute stream, in order
                _copy_into(buf, array)
        return pair, [e for e in events if e is not None], len(xb) / total, total

    def batches(self, backend, epoch):
        host = self._host_batches(epoch, backend.overlaps_copies)
        batch = next(host, None)
        ahead = None if batch is None else self._start(backend, batch, 0)
        turn = 0
        while ahead is not None:
            pair, events, share, total = ahead
            batch = next(host, None)  # the next batch's copy goes out before this step is queued
            ahead = None if batch is None else self._start(backend, batch, turn + 1)
            for event in events:
                backend.wait(event)  # this step waits for its own batch, nothing else
            yield (pair[0], pair[1]) if self.ranks is None else (pair[0], pair[1], share, total)
            pair[2] = backend.step_event()  # the step that read this pair is queued: copies after it
            turn += 1


def _batch(batch, where):
    """``batch`` of a source of batches as (xb, tb) arrays of one length (host or device),
    or an error naming it."""
    try:
        xb, tb = batch
    except (TypeError, ValueError):
        raise TypeError(f"{where} is {type(batch).__name__}, not a pair (xb, tb). Data is a pair (x, t) of "
                        f"arrays or an iterable of such batches.") from None
    xb, tb = array_or_host(xb, f"{where}: x"), array_or_host(tb, f"{where}: t")
    if xb.ndim == 0 or tb.ndim == 0:
        raise ShapeError(f"{where}: x has shape {xb.shape} and t has shape {tb.shape}; a batch has one sample "
                         f"per row. Data is a pair (x, t) of arrays or an iterable of batches (xb, tb).")
    if len(xb) != len(tb) or len(xb) == 0:
        raise ShapeError(f"{where}: x has {len(xb)} samples and t has {len(tb)}.")
    return xb, tb


def _rank_part(total, ranks):
    """(start, stop) of this rank's contiguous part of a global batch of ``total`` samples."""
    rank, size = ranks
    return total * rank // size, total * (rank + 1) // size


def _ranks(distributed):
    """(rank, size) for a data-parallel fit, or None for a single process."""
    if distributed is None:
        distributed = dist.launched()
    if not distributed:
        return None
    if not dist.launched():
        raise RuntimeError("fit(distributed=True): this process was not launched by an MPI launcher with more "
                           "than one rank. Run it as: mpiexec -n 2 python your_script.py (install the launcher "
                           "with pip install 'xpnet[mpi]').")
    return dist.rank(), dist.size()


def _sizes(source):
    """(samples, steps) of an epoch of ``source`` as far as they are known without reading
    it (-1: unknown, as for a generator)."""
    if isinstance(source, _Batches):
        return len(source.x), len(source)
    data = source.source
    if isinstance(data, Loader):
        return len(data.x), len(data)
    if isinstance(data, (list, tuple)):
        try:
            return sum(len(xb) for xb, _ in data), len(data)
        except (TypeError, ValueError):  # a malformed batch: the first step names it
            return -1, len(data)
    return -1, (len(data) if hasattr(data, "__len__") else -1)


def _same_on_every_rank(where, ranks, sizes: dict) -> None:
    """Raise ShapeError, naming every rank's sizes, unless all ranks have the same ``sizes``
    (name -> int, -1 unknown). One small allreduce on the host, before the first step: ranks
    with different data would otherwise train on mismatched parts of each batch, or wait in
    different collectives (MPICH: "Message truncated")."""
    rank, size = ranks
    table = numpy.zeros((size, len(sizes)), dtype=numpy.int64)
    table[rank] = list(sizes.values())
    dist.allreduce(table)
    if (table == table[0]).all():
        return

    def described(r):
        return ", ".join(f"{'an unknown number of' if v < 0 else v} {name}" for name, v in zip(sizes, table[r]))
    shown = range(size) if size <= 8 else sorted({0, rank, int(numpy.flatnonzero((table != table[0]).any(1))[0])})
    raise ShapeError(f"{where}: the {size} ranks were given different data: "
                     + "; ".join(f"rank {r} has {described(r)}" for r in shown)
                     + ". Every rank runs the same call on the same data (each takes its part of every "
                       "global batch): give every rank the same arrays, or Loaders and lists of batches "
                       "of the same sizes.")


def _copy_into(buf, array):
    """A device batch (already on this device) copied into the step's buffer."""
    buf[...] = to_device(array, device_of(buf))
    return buf


def _progress(total, desc, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a broken install only loses the bar
        return None
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=True,
                dynamic_ncols=True)


def fit(model, loss_fn, optimizer, data, epochs: int = 1, batch_size: int = 100,
        validation=None, device=None, shuffle: bool = True, seed=None, progress=None,
        graph: bool = True, drop_last: bool = False, schedule=None, stream=None,
        distributed=None, transform=None) -> History:
    """Train ``model``; returns a ``History``.

    ``data`` is a pair ``(x, t)`` of arrays (memory-maps included) or an iterable of host
    batches ``(xb, tb)``: a list, an ``xn.data.Loader``, or a generator (one epoch only).
    A pair is copied to the device once, unless it takes more than half of the device's
    free memory (``stream=None``, the default; ``stream=0.3`` sets another share) or
    ``stream=True``: then it is read in host batches, each copied to the device a step ahead. ``batch_size``,
    ``shuffle``, ``seed`` and ``drop_last`` apply to a pair; an iterable brings its own. A pair
    may be nested Python lists or tuples of numbers: ``(((0., 0.), (0., 1.)), (0, 1))`` is two
    samples. ``seed=None`` draws the shuffle from xpnet's generator, so ``xn.seed(n)`` makes
    the run reproducible. ``validation`` (a pair, or batches as ``data``) is evaluated after
    every epoch: a generator, which can be read only once, is refused when ``epochs > 1``.

    ``device`` defaults to the model's; if given and different, the model is moved there
    (its optimizer state follows on the next step). ``progress`` shows a bar (default:
    when stderr is a terminal). When ``batch_size`` does not divide the data, the last
    batch of each epoch is the short remainder; ``drop_last=True`` leaves it out (useful
    with BatchNorm, which cannot train on a batch of one). ``schedule`` (from
    ``xn.optim.schedules``, built for ``optimizer``) sets the learning rate after every
    epoch. ``transform(xb, tb) -> (xb, tb)`` runs on the device on every training batch,
    inside the step (so it is recorded with it: device operations only); a host-side one
    goes in an ``xn.data.Loader``.

    Raises ``TrainingError`` naming the epoch and step where the loss stopped being finite,
    or the steps after which a parameter, gradient or optimizer state did (checked with the
    losses, a few times an epoch and after the last step); the model and optimizer are then
    put back as they were at the last check that found everything finite, and the message
    says which check that was.

    ``graph``: on CUDA and sim, record the step and replay it (see the module's notes);
    ``graph=False`` runs every step kernel by kernel. A step with a loss function that
    does not declare ``graph_safe``, or a layer that declares it False, runs kernel by
    kernel.

    ``distributed`` (default: whether the process was launched by ``mpiexec`` with more
    than one rank; see ``xpnet.distributed``): train data parallel. Every rank runs this
    same call; rank r takes the r-th of ``size`` contiguous parts of every global batch,
    the gradients are averaged across ranks (weighted by part size, so the result is the
    single-process step's), the reported losses and accuracies are the global batch's,
    and only rank 0 shows progress. BatchNorm normalises each rank's part by itself, and
    each rank's Dropout draws from a counter range of its own (so an exact single-process
    match needs a model without them). Distributed steps are not recorded (the allreduce
    runs on the host). Before the first step the ranks compare their numbers of samples and
    steps (and validation samples), and all raise ``ShapeError`` naming each rank's if they
    differ (a generator's are unknown, so two generators are not compared).
    """
    epochs = _validate.integer("fit", "epochs", epochs)
    batch_size = _validate.integer("fit", "batch_size", batch_size)
    optimizer.check_model(model, "fit")
    _check_schedule(schedule, optimizer)
    device = model.device if device is None else Device(device)
    ranks = _ranks(distributed)
    labels = _LabelCheck()
    if _streamed(data):
        source = _Stream(data, labels)
    else:
        x, t = _check_data(data, "fit data")
        labels.add(t, "fit data")
        if stream is None or (not isinstance(stream, bool) and isinstance(stream, (int, float))):
            share = 0.5 if stream is None else _validate.real("fit", "stream", stream, low=0, high=1, low_open=True)
            free = device.backend.free_memory()
            stream = free is not None and x.nbytes + t.nbytes > share * free
        if ranks is not None and (len(x) % batch_size or batch_size) < ranks[1] and not drop_last:
            raise ShapeError(f"fit: {ranks[1]} ranks share each batch, but the last batch has "
                             f"{len(x) % batch_size} samples; use drop_last=True or another batch_size.")
        source = (_Stream(Loader(x, t, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last), labels)
                  if stream else _Batches(x, t, batch_size, shuffle, seed, drop_last))
        if len(source) == 0:
            raise ShapeError(f"fit: drop_last=True with batch_size={batch_size} leaves no batch of the "
                             f"{len(x)} samples; use a batch_size of at most {len(x)}.")
    source.ranks = ranks
    val_streamed = validation is not None and _streamed(validation)
    if val_streamed and epochs > 1 and isinstance(validation, collections.abc.Iterator):
        raise TypeError(f"fit: validation= is a {type(validation).__name__}, which can be read only once, "
                        f"but fit evaluates it after each of its {epochs} epochs (the second would find it "
                        f"empty). Pass a list of batches, an xn.data.Loader, or a pair (x, t).")
    if validation is not None and not val_streamed:
        validation = _check_data(validation, "validation")
        _LabelCheck().add(validation[1], "validation")
    if ranks is not None:
        samples, steps = _sizes(source)
        sizes = {"samples": samples, "steps": steps}
        if validation is not None and not val_streamed:
            sizes["validation samples"] = len(validation[0])
        _same_on_every_rank("fit", ranks, sizes)
    if model.device != device:
        model.to(device)
    show = (sys.stderr.isatty() if progress is None else bool(progress)) and (ranks is None or ranks[0] == 0)
    history = History()
    classify = getattr(loss_fn, "classification", False)
    record = (graph and ranks is None and getattr(model, "graph_safe", False)
              and getattr(loss_fn, "graph_safe", False))
    with use_device(device):
        xp = device.xp
        if isinstance(source, _Batches):
            source.to(device)  # the one copy of the set
        val = validation  # batches of a stream: evaluate copies each as it goes
        if isinstance(source, _Batches) and validation is not None and not val_streamed:
            val = to_device(validation, device)  # a set that fits: copied once, like the training set
        chunk = max(1, len(source) // 10) if len(source) else 50
        losses = xp.empty(chunk + 1, dtype=numpy.float32)  # and one slot for the state's check
        correct = xp.zeros((), dtype=numpy.int64)
        replays = {}  # batch buffers -> the step as the device runs it (recorded where it records)
        if ranks is not None:
            optimizer._prepare()  # the flat gradient buffers, one allreduce each
            dist.broadcast({**model.params(), **model.buffers()})  # every rank starts from rank 0's
            dist.separate_streams(model, ranks[0])  # different samples, different Dropout masks
        last_good = _Snapshot(model, optimizer)

        def train_step(xb, tb, share=None):
            if transform is not None:
                xb, tb = transform(xb, tb)
            y = model.forward(xb)
            if classify:
                labels.against(y.shape[1])
            loss = loss_fn(y, tb)
            model.backward(loss_fn.backward())
            if share is not None:  # this rank's part of the global batch: weight, then sum
                for group in optimizer._prepare():
                    group.g *= share
                    dist.allreduce(group.g)
                loss = loss * share
            optimizer.step()
            if classify:
                xp.add(correct, (y.argmax(axis=1) == _labels(tb)).sum(), out=correct)
            return loss

        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            model.train()
            correct[...] = 0
            bar = _progress(len(source) or None, f"epoch {epoch}/{epochs}", show)
            epoch_losses, pending, seen, steps = [], 0, 0, 0

            def flush():
                # the state after this chunk's last step is checked on the device; its count of
                # non-finite arrays comes back with the losses, in the same read
                losses[pending] = last_good.nonfinite(xp)
                values = to_host(losses[:pending + 1])
                if ranks:
                    values = dist.allreduce(values.copy())
                values, bad_state = values[:-1], values[-1]
                _check_finite(values, bad_state, epoch, steps - pending, optimizer, last_good)
                last_good.take(epoch, steps)
                epoch_losses.extend(values.tolist())
                if bar is not None:
                    bar.update(pending)
                    bar.set_postfix(loss=f"{values.mean():.4f}", refresh=False)

            # closed on the way out, an exception included: a read-ahead thread stops with it
            with contextlib.closing(source.batches(device.backend, epoch)) as batches:
                for xb, tb, *share in batches:
                    if share:
                        losses[pending] = train_step(xb, tb, share[0])
                    elif record:  # one recorded step per pair of batch buffers (per shape; two when streaming)
                        key = (id(xb), id(tb))
                        run = replays.get(key)
                        if run is None:
                            run = replays[key] = device.backend.record(
                                functools.partial(train_step, xb, tb), owners=(model, loss_fn))
                        losses[pending] = run()
                    else:
                        losses[pending] = train_step(xb, tb)
                    pending, seen, steps = pending + 1, seen + (share[1] if share else len(xb)), steps + 1
                    if pending == chunk:
                        flush()
                        pending = 0
            if pending:
                flush()
            if steps == 0:
                raise ValueError(f"fit: epoch {epoch} had no batches: the data iterable was exhausted (a "
                                 f"generator runs once). For more epochs pass a list of batches or an "
                                 f"xn.data.Loader.")
            history.step_loss.extend(epoch_losses)
            history.epoch_loss.append(float(numpy.mean(epoch_losses)))
            hits = to_host(correct).reshape(1).astype(numpy.float64)
            if ranks:
                dist.allreduce(hits)
            history.epoch_accuracy.append(float(hits[0]) / seen if classify else None)
            if val is not None:
                result = evaluate(model, val, device=device, loss_fn=loss_fn, distributed=ranks is not None)
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


class _Snapshot:
    """A device-side copy of the model's parameters and buffers and the optimizer's state,
    taken whenever fit has seen that the losses so far are finite and that the state after
    the last step is too, so that a NaN leaves the model as it was after the last good
    check rather than holding NaN weights.

    What is checked: parameters, their gradients and the optimizer's floating-point state
    must be finite; buffers must not be NaN (they may hold +-inf on purpose, a mask's
    -inf). The check runs on the device and its count travels back with the losses at
    each flush (``nonfinite``), so it costs no extra read and nothing inside the step."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.copies, self.where = {}, "before the first step"
        self.take(None, 0)

    def _live(self):
        arrays = {f"param/{k}": v for k, v in self.model.params().items()}
        arrays.update({f"buffer/{k}": v for k, v in self.model.buffers().items()})
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.per_step_arrays().items()})
        return arrays

    def _watched(self, arrays, grads):
        """(label, array, whether +-inf is allowed) for every floating-point array to check."""
        watched = [(_label(name), a, name.startswith("buffer/")) for name, a in arrays.items()]
        if grads:
            watched += [(f"the gradient of {k!r}", g, False) for k, g in self.model.grads().items()]
        return [w for w in watched if w[1] is not None and w[1].dtype.kind in "fc"]

    def nonfinite(self, xp):
        """A device scalar (float32): how many of the live parameters, gradients, buffers and
        optimizer states hold NaN or inf (buffers: NaN). Computed on the device, read by the
        caller together with the losses."""
        count = xp.zeros((), dtype=numpy.float32)
        for _, a, inf_ok in self._watched(self._live(), grads=True):
            count += (xp.isnan(a) if inf_ok else xp.logical_not(xp.isfinite(a))).any()
        return count

    def nonfinite_names(self, copies=False) -> list:
        """The labels of the arrays that hold NaN or inf, read on the host (a failure's path
        only): the live ones, or (``copies``) the snapshot's."""
        arrays = self.copies if copies else self._live()
        bad = []
        for label, a, inf_ok in self._watched(arrays, grads=not copies):
            a = to_host(a)
            if (numpy.isnan(a) if inf_ok else ~numpy.isfinite(a)).any():
                bad.append(label)
        return bad

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
        """Put the snapshot back; returns where it was taken, truthfully: the state before
        the first step was never checked, and is said to hold NaN or inf if it does."""
        for name, live in self._live().items():
            copy = self.copies.get(name)
            live[...] = 0 if copy is None else copy  # optimizer state born since: fresh
        if self.where == "before the first step":
            bad = self.nonfinite_names(copies=True)
            if bad:
                return (f"{self.where}, which already held NaN or inf in {_names(bad)}: training "
                        f"started from a broken state; start from finite weights (re-create or reload "
                        f"the model)")
        return self.where


def _label(name):
    kind, _, rest = name.partition("/")
    return {"param": "parameter", "buffer": "buffer", "optim": "optimizer state"}[kind] + f" {rest!r}"


def _names(labels, at_most=4):
    shown = ", ".join(labels[:at_most])
    return shown + (f" and {len(labels) - at_most} more" if len(labels) > at_most else "")


def _check_finite(chunk, bad_state, epoch, first_step, optimizer, last_good):
    """Raise TrainingError, after restoring the last good snapshot, if a loss of the chunk
    (steps first_step+1 ...) is NaN or inf or the state after its last step is (bad_state:
    the count of such arrays, from ``_Snapshot.nonfinite``)."""
    bad = numpy.flatnonzero(~numpy.isfinite(chunk))
    if not bad.size and not bad_state:
        return
    last = first_step + len(chunk)
    broken = last_good.nonfinite_names()  # before the restore: what the step left behind
    if bad.size:
        step = first_step + int(bad[0]) + 1
        what = f"the loss became {chunk[bad[0]]} at epoch {epoch}, step {step}"
        if broken:
            what += f" ({_names(broken)} held NaN or inf after step {last})"
    else:
        steps = f"step {last}" if len(chunk) == 1 else f"steps {first_step + 1} to {last}"
        what = (f"{_names(broken) if broken else 'a parameter or gradient'} held NaN or inf after step "
                f"{last} of epoch {epoch}, while the losses of {steps} were finite (an update overflowed, "
                f"or an operation whose gradient is not finite where its value is: sqrt or log at 0, a "
                f"division by 0)")
    where = last_good.restore()
    raise TrainingError(
        f"{what}. Training stopped, and the model and optimizer were restored to where they were "
        f"{where} (the last check with finite losses, parameters and gradients). Try a smaller "
        f"learning rate (lr={optimizer.lr}) or check the data and the model for NaN/inf.")


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
    model's device; each batch of host input is copied there just before its forward, so
    a memory-mapped ``x`` larger than the device works. ``x`` may also be an iterable of
    input batches. Move the result with ``xn.to_host``."""
    batch_size = _validate.integer("predict", "batch_size", batch_size)
    listed = isinstance(x, (list, tuple)) and len(x) > 0 and getattr(x[0], "ndim", 0) >= 1
    if listed or (not isinstance(x, (list, tuple)) and _streamed(x)):  # batches of inputs
        batches = (array_or_host(b, f"predict input, batch {k}") for k, b in enumerate(x))
    else:
        x = array_or_host(x, "predict input")
        if x.ndim == 0 or len(x) == 0:
            raise ShapeError("predict got no samples (an input of length 0); pass at least one.")
        batches = (x[lo:lo + batch_size] for lo in range(0, len(x), batch_size))
    with _evaluating(model) as device:
        outputs = [model.forward(to_device(b, device)) for b in batches]
        if not outputs:
            raise ShapeError("predict got no samples (an empty iterable of batches).")
        return device.xp.concatenate(outputs)


def evaluate(model, data, device=None, batch_size: int = 1000, loss_fn=None, distributed=None) -> dict:
    """Mean loss and accuracy of ``model`` on ``data`` in eval mode: a pair ``(x, t)`` of
    arrays (each batch copied to the device as it is used, so memory-maps larger than the
    device work), or an iterable of ``(x, t)`` host batches.

    ``loss_fn`` defaults to SoftmaxCrossEntropy; accuracy is None for a loss that is not
    a classification loss. The model's train/eval mode is restored afterwards. In a
    distributed run (``distributed`` as in ``fit``) each rank evaluates its contiguous part
    of a pair (an iterable: the batches it is given) and the sums are reduced, so every
    rank returns the whole set's figures.
    """
    batch_size = _validate.integer("evaluate", "batch_size", batch_size)
    ranks = _ranks(distributed)
    labels = _LabelCheck()
    streamed = _streamed(data)
    if streamed:
        batches = data
    else:
        x, t = _check_data(data, "evaluate data")
        labels.add(t, "evaluate data")
        if ranks is not None:
            _same_on_every_rank("evaluate", ranks, {"samples": len(x)})
            rank, size = ranks
            part = slice(len(x) * rank // size, len(x) * (rank + 1) // size)
            x, t = x[part], t[part]
        batches = ((x[lo:lo + batch_size], t[lo:lo + batch_size]) for lo in range(0, len(x), batch_size))
    device = model.device if device is None else Device(device)
    if model.device != device:
        raise ValueError(f"evaluate: the model is on {model.device}, not {device}; "
                         f"move it first with model.to('{device}').")
    loss_fn = SoftmaxCrossEntropy() if loss_fn is None else loss_fn
    classify = getattr(loss_fn, "classification", False)
    with _evaluating(model):
        xp = device.xp
        total = xp.zeros((), dtype=numpy.float64)
        correct = xp.zeros((), dtype=numpy.int64)
        seen = 0
        for k, batch in enumerate(batches):
            if streamed:
                where = f"evaluate data, batch {k}"
                xb, tb = _batch(batch, where)
                labels.add(tb, where)
            else:
                xb, tb = batch
            xb, tb = to_device((xb, tb), device)
            y = model.forward(xb)
            if classify:
                labels.against(y.shape[1])
            total += loss_fn(y, tb) * len(xb)
            if classify:
                correct += (y.argmax(axis=1) == _labels(tb)).sum()
            seen += len(xb)
        sums = numpy.array([float(to_host(total)), float(to_host(correct)), seen], dtype=numpy.float64)
        if ranks is not None:
            dist.allreduce(sums)
        total, correct, seen = sums
        if seen == 0:
            raise ShapeError("evaluate data is empty.")
    return {"loss": float(total / seen), "accuracy": float(correct / seen) if classify else None}
