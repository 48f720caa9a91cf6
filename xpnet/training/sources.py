"""Where ``fit`` gets its batches: a set copied to the device once (``InMemory``), or host
batches streamed to the device a step ahead (``Streamed``); and the checks of what it is
given (pairs, batches, class labels, finite host data).

Both sources yield ``(xb, tb, share, total)``: device buffers the step reads (the same
buffers for every batch of a shape, so a recorded step replays), the share of the global
batch this process trains on (None in a single process) and the global batch's size. In a
data-parallel run the ``split`` a source is given (``parallel.DataParallel.part``) says
which contiguous part of each global batch is this rank's, and a ``Streamed`` source's
``agree`` (``parallel.DataParallel.agree``) checks that every rank read a batch of the same
size, where no rank knew the sizes before reading them (a generator, a list of batches).
"""
from __future__ import annotations

import collections.abc
import math

import numpy

from .. import _validate
from ..device import device_of, use_device
from ..errors import ShapeError
from ..nn.init import generator
from ..transfer import array_or_host, to_device, to_host
from .loader import Loader, read_ahead

_CHUNK = 1 << 22  # elements checked at a time, so a memory-map is read in pieces


def check_finite(array, what, offset=0):
    """Refuse NaN or +-inf in ``array`` if it is a host array of floats, naming the first
    such value's position (``offset`` numbers its rows). A device array is not read (that
    would wait for the device): ``evaluate`` then reports accuracy NaN for non-finite
    outputs, and ``fit``'s NaN guard stops at the non-finite loss."""
    if not isinstance(array, numpy.ndarray) or array.dtype.kind not in "fc" or array.size == 0:
        return
    rows = max(1, _CHUNK // max(1, array.size // len(array)))
    for lo in range(0, len(array), rows):
        part = array[lo:lo + rows]
        finite = numpy.isfinite(part)
        if finite.all():
            continue
        inside = numpy.unravel_index(int(numpy.argmin(finite)), part.shape)  # the first, in C order
        position = (offset + lo + int(inside[0]),) + tuple(int(i) for i in inside[1:])
        shown = position[0] if len(position) == 1 else position
        raise ValueError(f"{what} holds {part[inside]} at position {shown} (sample {position[0]}); "
                         f"data must be finite (a NaN would make the loss NaN and the accuracy meaningless). "
                         f"Drop or fix that sample: numpy.isfinite finds such values.")


def check_pair(data, what):
    """``data`` as a pair ``(x, t)`` of arrays (host or device) of one nonzero length."""
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
    check_finite(x, f"{what}: x")
    check_finite(t, f"{what}: t")
    return x, t


def check_batch(batch, where, finite=True):
    """``batch`` of a source of batches as (xb, tb) arrays of one length (host or device),
    or an error naming it; with ``finite``, host floats are checked for NaN and +-inf."""
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
    if finite:
        check_finite(xb, f"{where}: x")
        check_finite(tb, f"{where}: t")
    return xb, tb


def class_indices(t):
    """Class indices from index or one-hot labels."""
    return t if t.ndim == 1 else t.argmax(axis=1)


class LabelCheck:
    """Integer class labels, checked on the host before they are used: a negative label
    fails at once (NumPy and CuPy would read -1 as the last class); labels above the
    model's output width fail at the first step, when the width is known (a shape, no
    device read), and in every later batch that is added."""

    def __init__(self):
        self.classes, self.pending, self.widths = None, [], {}

    def add(self, t, what, offset=0):
        """Check the labels ``t`` (host or device; ``offset`` numbers their positions); of
        one-hot or soft labels (N, C), their width C."""
        if t.ndim == 2 and t.dtype.kind == "f" and len(t):
            self.widths.setdefault(t.shape[1], what)  # one entry a width, however many batches
            if self.classes is not None:
                self.against(self.classes)
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
        """Raise if a label is not below ``classes`` (the output's width), or a set of one-hot
        labels is not ``classes`` wide."""
        self.classes = classes
        for width, what in self.widths.items():
            if width != classes:
                raise ValueError(f"{what}: one-hot labels of {width} columns for a model with {classes} outputs; "
                                 f"give labels of shape (N, {classes}), or give the last layer {width} outputs.")
        self.widths = {}
        for t, what, offset, high in self.pending:
            if high >= classes:
                t = t if isinstance(t, numpy.ndarray) else to_host(t)
                where = int(numpy.argmax(t >= classes))
                raise ValueError(f"{what}: label {int(t[where])} at position {offset + where} is not a "
                                 f"class index for a model with {classes} outputs (valid: 0..{classes - 1}). "
                                 f"Fix the labels, or give the last layer more outputs.")
        self.pending = []


def is_batches(data) -> bool:
    """Whether ``data`` is a source of batches (a Loader, a generator, a list of ``(xb, tb)``
    batches) rather than a pair (x, t) of arrays or of nested lists or tuples of numbers.

    A list or tuple of two items is a pair when both are array-likes of one length, as
    ``(((0., 0.), (0., 1.)), (0, 1))`` (x of shape (2, 2), t of shape (2,)), unless its first
    item is ``(xb, tb)`` holding arrays; it is two batches when each item could be a batch
    (two array-likes of at least one dimension). Longer ones are batches when their first
    item could be one. Anything else is read as a pair, so ``check_pair`` says what is
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


def _whole(total, where=None):
    """The split of a single process: every batch whole."""
    return None


def _agreed(total, where):
    """The check of a single process: nothing to compare a batch with."""


class InMemory:
    """Batches of a dataset copied to the device once, gathered into buffers reused across
    steps (one pair per batch size, so a recorded step always reads the same two)."""

    def __init__(self, x, t, batch_size, shuffle, seed, drop_last):
        self.x, self.t, self.batch_size, self.shuffle = x, t, batch_size, shuffle
        self.rng = generator(seed)  # seed=None: xpnet's generator, which xn.seed(n) reseeds
        n = len(x)
        self.steps = n // batch_size if drop_last else math.ceil(n / batch_size)
        self.buffers = {}
        self.split = _whole

    def __len__(self):
        return self.steps

    def sizes(self):
        """(samples, steps) of an epoch."""
        return len(self.x), self.steps

    def skip(self, epochs):
        """Draw, and drop, the orders of ``epochs`` epochs (a resumed fit's first ones)."""
        for _ in range(epochs if self.shuffle else 0):
            self.rng.permutation(len(self.x))

    def to(self, device):
        self.x, self.t = to_device((self.x, self.t), device)

    def _buffers(self, backend, rows):
        bufs = self.buffers.get(rows)
        if bufs is None:
            xp = backend.xp
            bufs = self.buffers[rows] = (xp.empty((rows,) + self.x.shape[1:], dtype=self.x.dtype),
                                         xp.empty((rows,) + self.t.shape[1:], dtype=self.t.dtype))
        return bufs

    def batches(self, backend, epoch):
        n = len(self.x)
        order = to_device(self.rng.permutation(n)) if self.shuffle else None
        for step in range(self.steps):
            lo, hi = step * self.batch_size, min(n, (step + 1) * self.batch_size)
            total, part = hi - lo, self.split(hi - lo)
            if part is not None:
                lo, hi = lo + part[0], lo + part[1]
            bufs = self._buffers(backend, hi - lo)
            if order is None:
                bufs[0][...] = self.x[lo:hi]
                bufs[1][...] = self.t[lo:hi]
                batch = bufs
            else:
                idx = order[lo:hi]
                batch = backend.gather_rows(self.x, idx, bufs[0]), backend.gather_rows(self.t, idx, bufs[1])
            yield (*batch, None if part is None else (hi - lo) / total, total)


class Streamed:
    """Host batches streamed to the device, one ahead: the copy of batch k+1 is issued (on a
    copy stream, from page-locked memory, on CUDA) before step k is queued, and step k waits
    for its own batch's copy only. Each batch shape has two pairs of device buffers that
    batches take in turn, so a copy never overwrites what a queued step still reads (the
    copy into a pair waits for the step that used it last). The recorded steps read these
    buffers, one recording per pair."""

    def __init__(self, source, labels, checked=False):
        self.source, self.labels = source, labels
        self.checked = checked  # the batches of a pair whose values were checked up front
        self.slots = {}  # batch shapes and dtypes -> two [x buffer, t buffer, event of last step]
        self.split, self.agree = _whole, _agreed

    def __len__(self):
        return len(self.source) if hasattr(self.source, "__len__") else 0

    def skip(self, epochs):
        """A Loader's orders of ``epochs`` epochs drawn and dropped; other batches come as given."""
        if isinstance(self.source, Loader):
            self.source.skip(epochs)

    def sizes(self):
        """(samples, steps) of an epoch as far as they are known without reading it (-1:
        unknown, as for a generator)."""
        data = self.source
        if isinstance(data, Loader):
            return len(data.x), len(data)
        if isinstance(data, (list, tuple)):
            try:
                return sum(len(xb) for xb, _ in data), len(data)
            except (TypeError, ValueError):  # a malformed batch: the first step names it
                return -1, len(data)
        return -1, (len(data) if hasattr(data, "__len__") else -1)

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
        # A Loader's batches have sizes every rank knew before the epoch (compared then);
        # a generator's or a list's are compared as they are read, the end of the data too.
        agree = _agreed if isinstance(self.source, Loader) else self.agree
        k = -1
        for k, batch in enumerate(source):
            xb, tb = check_batch(batch, f"fit data, batch {k}", finite=not self.checked)
            self.labels.add(tb, f"fit data, epoch {epoch}, batch {k}")
            total = len(xb)
            agree(total, f"fit data, epoch {epoch}, batch {k}")
            part = self.split(total, f"fit data, batch {k}")  # this rank's contiguous part
            if part is not None:
                xb, tb = xb[part[0]:part[1]], tb[part[0]:part[1]]
            yield xb, tb, total, part
        agree(-1, f"fit data, epoch {epoch}, batch {k + 1}")

    def _start(self, backend, batch, turn):
        """Issue the copies of ``batch`` into its shape's buffer pair for ``turn``."""
        xb, tb, total, part = batch
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
                buf[...] = to_device(array, device_of(buf))
        return pair, [e for e in events if e is not None], None if part is None else len(xb) / total, total

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
            yield pair[0], pair[1], share, total
            pair[2] = backend.step_event()  # the step that read this pair is queued: copies after it
            turn += 1


def _stream_decision(stream, nbytes, device) -> bool:
    """Whether a pair of ``nbytes`` is streamed: ``stream`` True or False says so; None
    streams when the pair takes more than half of the device's free memory. A number (the
    share of free memory, as before) is deprecated and still honoured."""
    if stream is None or isinstance(stream, bool):
        share = 0.5 if stream is None else None
    elif isinstance(stream, (int, float)):
        import warnings
        share = _validate.real("fit", "stream", stream, low=0, high=1, low_open=True)
        warnings.warn(f"fit(stream={stream!r}): a share of the device's memory is deprecated; stream= now "
                      f"only says whether to stream: True, False, or None (the default: when the set "
                      f"takes more than half of the device's free memory).", DeprecationWarning, stacklevel=5)
    else:
        raise TypeError(f"fit: stream must be True, False or None (stream when the set takes more than half "
                        f"of the device's free memory), got {type(stream).__name__} {stream!r}.")
    if share is None:
        return stream
    free = device.backend.free_memory()
    return free is not None and nbytes > share * free


def refuse_read_once(data, epochs, what, use) -> None:
    """Refuse batches that can be read only once (an iterator: a generator) where fit reads
    them each of ``epochs`` > 1 epochs (``use`` says how)."""
    if epochs > 1 and isinstance(data, collections.abc.Iterator):
        raise TypeError(f"fit: {what} is a {type(data).__name__}, which can be read only once, but fit {use} (the "
                        f"second would find it empty). Pass a list of batches, an xn.data.Loader, or a pair (x, t).")


def training_source(data, labels, device, batch_size, shuffle, seed, drop_last, stream, ranks=1, epochs=1):
    """The source of ``fit``'s training batches (``data`` checked, its labels added to
    ``labels``): ``InMemory`` for a pair that fits, ``Streamed`` otherwise. ``ranks``
    processes share each batch, so each batch of a pair needs at least that many samples;
    a generator, read once, is refused for more than one of ``epochs``."""
    if isinstance(data, Loader) and len(data) == 0:
        raise ShapeError(f"fit: the Loader gives no batch: drop_last=True with batch_size={data.batch_size} leaves "
                         f"none of its {len(data.x)} samples; use a batch_size of at most {len(data.x)}.")
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise ShapeError("fit data is empty (a list of no batches); give a pair (x, t) or batches (xb, tb).")
    if is_batches(data):
        refuse_read_once(data, epochs, "the data", f"trains {epochs} epochs")
        return Streamed(data, labels)
    x, t = check_pair(data, "fit data")
    labels.add(t, "fit data")
    if (len(x) % batch_size or batch_size) < ranks and not drop_last:
        raise ShapeError(f"fit: {ranks} ranks share each batch, but the last batch has "
                         f"{len(x) % batch_size} samples; use drop_last=True or another batch_size.")
    if _stream_decision(stream, x.nbytes + t.nbytes, device):
        source = Streamed(Loader(x, t, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last), labels,
                          checked=True)
    else:
        source = InMemory(x, t, batch_size, shuffle, seed, drop_last)
    if len(source) == 0:
        raise ShapeError(f"fit: drop_last=True with batch_size={batch_size} leaves no batch of the "
                         f"{len(x)} samples; use a batch_size of at most {len(x)}.")
    return source
