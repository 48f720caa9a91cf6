"""Batches from the host: ``Loader`` iterates a dataset that stays on the host (arrays,
memory-mapped ``.npy`` files) in host batches, for ``fit``, ``evaluate`` and ``predict``.

``fit`` copies a set that fits on the device there once; a ``Loader`` (or any iterable
of ``(x, t)`` host batches, a generator included) streams instead: each batch is copied
into the step's own device buffers just before the step, so the recorded step still
replays and only one batch at a time needs device memory.
"""
from __future__ import annotations

import math
import queue
import threading

import numpy

from .. import _validate
from ..nn.init import generator
from ..transfer import array_or_host


class Loader:
    """Host batches of ``(x, t)``: ``for xb, tb in Loader(x, t, batch_size=100)``.

    ``x`` and ``t`` are host arrays of equal length, memory-maps included
    (``numpy.load(path, mmap_mode="r")``, ``xn.datasets.load_memmap``): a batch reads only
    its rows. ``shuffle`` draws a new order every epoch (iteration) from ``seed``, or with
    ``seed=None`` from xpnet's generator, the one ``xn.seed(n)`` reseeds (looked up at each
    epoch, so ``xn.seed`` called after the Loader was made still counts);
    ``drop_last`` leaves out a short last batch; ``transform(xb, tb) -> (xb, tb)`` runs on
    each host batch (augmentation). Iterating again starts a new epoch.
    """

    def __init__(self, x, t, batch_size: int = 100, shuffle: bool = False, seed=None, drop_last: bool = False,
                 transform=None):
        self.x, self.t = array_or_host(x, "Loader: x"), array_or_host(t, "Loader: t")
        if not all(isinstance(a, numpy.ndarray) for a in (self.x, self.t)):
            raise TypeError("Loader reads host data (NumPy arrays or memory-maps); a set already on a "
                            "device is given to fit as (x, t).")
        if len(self.x) != len(self.t):
            raise ValueError(f"Loader: x has {len(self.x)} samples but t has {len(self.t)}.")
        self.batch_size = _validate.integer("Loader", "batch_size", batch_size)
        self.shuffle, self.drop_last, self.transform = shuffle, drop_last, transform
        self._rng = None if seed is None else numpy.random.default_rng(seed)

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _generator(self):
        """The orders' generator: its own (``seed=``), or xpnet's (``xn.seed`` reseeds it)."""
        return generator() if self._rng is None else self._rng

    def skip(self, epochs: int) -> None:
        """Draw, and drop, the orders of ``epochs`` epochs (``fit(initial_epoch=)``)."""
        for _ in range(epochs if self.shuffle else 0):
            self._generator().permutation(len(self.x))

    def __iter__(self):
        n = len(self.x)
        order = self._generator().permutation(n) if self.shuffle else None
        for step in range(len(self)):
            lo, hi = step * self.batch_size, min(n, (step + 1) * self.batch_size)
            if order is None:
                # copies, as the shuffled gather makes: a batch is the consumer's to change
                xb, tb = numpy.array(self.x[lo:hi]), numpy.array(self.t[lo:hi])
            else:
                idx = order[lo:hi]
                xb, tb = self.x[idx], self.t[idx]
            yield self.transform(xb, tb) if self.transform is not None else (xb, tb)


class _Reader:
    """The thread of ``read_ahead``: puts ``(item, None)`` for each item of ``batches`` and
    ``(end, exception or None)`` last, until the consumer stops."""

    end = object()

    def __init__(self, batches, depth):
        self.batches, self.items, self.stop = batches, queue.Queue(depth), threading.Event()
        self.thread = threading.Thread(target=self.read, name="xpnet-read-ahead", daemon=True)

    def put(self, entry) -> bool:
        """False once the consumer has stopped: a full queue never strands the thread."""
        while not self.stop.is_set():
            try:
                self.items.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def read(self):
        try:
            for item in self.batches:
                if not self.put((item, None)):
                    return
            self.put((self.end, None))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the consumer)
            self.put((self.end, exc))


def read_ahead(batches, depth: int = 2):
    """Iterate ``batches`` on a thread of its own, up to ``depth`` items ahead of the
    consumer, so that reading them (a Loader's gather from a memory-map, which NumPy runs
    without the GIL) overlaps the device's work. Items come in their order; an exception
    comes out where its item would have. Stopping early stops the thread."""
    reader = _Reader(batches, depth)
    reader.thread.start()
    try:
        while True:
            item, exc = reader.items.get()
            if exc is not None:
                raise exc
            if item is reader.end:
                return
            yield item
    finally:
        reader.stop.set()
        # A generator left to the garbage collector may be closed on the reading thread
        # itself, when a collection runs there: that thread then ends after this item.
        if reader.thread is not threading.current_thread():
            reader.thread.join()
