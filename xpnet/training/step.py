"""The training step: forward, loss, backward, update, and the count of correct answers;
the one thing ``fit`` records.

On CUDA and sim the step is recorded the first time each pair of batch buffers comes up
(``backend.record``: a CUDA graph, or sim's tape under CUDA's rules) and replayed after
that: one launch instead of about fifty, which is what a small network's step costs on a
GPU. The sources gather or copy each batch into the buffers the recording reads, so only
the batch changes between replays; the optimizer keeps its step count and rate on the
device, and the loss stays there until the loop reads a chunk of them.

A recording bakes in the Python values the step read while it was recorded (a momentum,
Dropout's p, train or eval mode, whether a per-step schedule is attached, which flat
buffers the optimizer updates). Between steps ``fit`` runs callbacks (and through its own,
a schedule's ``step``), so each round of them is watched (``watched``): where one set a
number, string or bool attribute of the optimizer, the loss, the transform or a layer, or
replaced the optimizer's flat buffers or its per-step schedule, the step is recorded again
before it runs next. A change made in place to an array is read by the replay as it is,
and so is the rate (on the device): neither records anew.
"""
from __future__ import annotations

import functools

import numpy

from ..nn.wrapping import _leaf_layers
from ..transfer import to_host
from .sources import class_indices

_PLAIN = (int, float, complex, str, bytes, type(None), numpy.generic)  # bool is an int


def _is_array(value) -> bool:
    """An array of any device (a NumPy scalar is a number, not one)."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


class _Held:
    """An object compared by identity (a tuple of arrays is not compared element by element),
    and held, so that a new one is never taken for a freed one at the same address."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Held) and self.value is other.value

    __hash__ = None


@functools.cache
def _unrecorded(cls) -> frozenset:
    """The names ``cls`` and its bases list in ``_unrecorded``."""
    return frozenset(name for base in cls.__mro__ for name in vars(base).get("_unrecorded", ()))


class TrainStep:
    """One training step of ``model`` on a batch; ``run`` records it where it can.

    ``parallel`` (``SingleProcess`` or ``DataParallel``) sums a part's gradients across
    ranks between backward and the update; ``labels`` (a ``LabelCheck``) learns the
    model's output width from the first step; ``transform(xb, tb)`` runs on the device
    inside the step. A step is recorded when ``graph`` is true, the processes allow it,
    and the model and the loss declare ``graph_safe``."""

    def __init__(self, model, loss_fn, optimizer, parallel, labels, transform=None, graph=True):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.parallel, self.labels, self.transform = parallel, labels, transform
        self.classify = getattr(loss_fn, "classification", False)
        self.records = (graph and parallel.records and getattr(model, "graph_safe", False)
                        and getattr(loss_fn, "graph_safe", False))
        self.replays = {}  # batch buffers -> the step as the device runs it (recorded where it records)
        self.correct = None

    def start(self, device):
        """Allocate the device's count of correct answers (before the first epoch)."""
        self.device = device
        self.correct = device.xp.zeros((), dtype=numpy.int64)

    def new_epoch(self):
        self.correct[...] = 0

    def __call__(self, xb, tb, share=None):
        """The step itself; returns the loss as a device scalar (``share``: this rank's part
        of the global batch, whose gradients and loss are weighted by it and then summed)."""
        if self.transform is not None:
            xb, tb = self._transformed(xb, tb)
        y = self.model.forward(xb)
        if self.classify:
            self.labels.against(y.shape[1])
        loss = self._loss(y, tb)
        self.model.backward(self.loss_fn.backward())
        if share is not None:
            self.parallel.reduce_gradients(self.optimizer, share)
            loss = loss * share
        self.optimizer.step()
        if self.classify:
            xp = self.device.xp
            xp.add(self.correct, (y.argmax(axis=1) == class_indices(tb)).sum(), out=self.correct)
        return loss

    def _transformed(self, xb, tb):
        """The transform's batch; one that can (``_reuse``, as xn.augment's do) writes it into
        a buffer of its own, which the step, and a recording of it, owns."""
        reuses = hasattr(self.transform, "_reuse")
        if reuses:
            self.transform._reuse = True
        try:
            return self.transform(xb, tb)
        finally:
            if reuses:
                self.transform._reuse = False

    def _loss(self, y, tb):
        """The loss, told for this call that fit checked the class indices on the host (so it
        adds no device check of its own), unless a transform may have changed them since."""
        trusted = self.classify and self.transform is None and hasattr(self.loss_fn, "_labels_checked")
        if not trusted:
            return self.loss_fn(y, tb)
        self.loss_fn._labels_checked = True
        try:
            return self.loss_fn(y, tb)
        finally:
            self.loss_fn._labels_checked = False

    def run(self, xb, tb, share=None):
        """One step on the batch in ``xb``, ``tb``: replayed when it is recorded (one recording
        per pair of buffers: per batch shape, two when streaming), else run as it is."""
        if share is not None or not self.records:
            return self(xb, tb, share)
        key = (id(xb), id(tb))
        replay = self.replays.get(key)
        if replay is None:
            replay = self.replays[key] = self.device.backend.record(
                functools.partial(self, xb, tb), owners=(self.model, self.loss_fn))
        return replay()

    def watched(self, call):
        """``call()`` (callbacks, between steps); the recordings are dropped, to be made again
        at the next step, if it changed a setting a recording bakes in (``_settings``)."""
        if not self.replays or not self.device.backend.records:  # the CPU replays nothing
            return call()
        before = self._settings()
        try:
            return call()
        finally:
            if self._settings() != before:
                self.replays.clear()

    def _settings(self) -> list:
        """What a recording bakes in: every attribute of the optimizer, its per-step schedule,
        the loss, the transform and each layer (numbers, strings, bools and None by value,
        any other object itself, held, so a new one is never taken for a freed one), but
        arrays (written in place, as a replay reads them) and what a class lists in
        ``_unrecorded`` (read from the device by the step, or set by each call: an eval-mode
        forward in a callback's ``evaluate`` records nothing new)."""
        optimizer = self.optimizer
        found = []
        for part in (optimizer, optimizer.step_schedule, self.loss_fn, self.transform, self.model,
                     *_leaf_layers([self.model])):
            skip = _unrecorded(type(part))
            found.append([(name, value if isinstance(value, _PLAIN) else _Held(value))
                          for name, value in getattr(part, "__dict__", {}).items()
                          if name not in skip and (isinstance(value, _PLAIN) or not _is_array(value))])
        return found

    def hits(self):
        """The epoch's count of correct answers, read to the host (a float64 array of one)."""
        return to_host(self.correct).reshape(1).astype(numpy.float64)
