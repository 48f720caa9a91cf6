"""The portable backend: every numeric routine xpnet needs, written once on ``self.xp``.

A backend subclass sets ``xp`` and the transfer methods, and overrides a routine only
where it has something faster (thinc's ``Ops`` pattern). Generic code calls
``backend.relu_backward(...)`` and never asks which backend it holds.

Routines that take ``out=`` write into that buffer and return it; without ``out`` they
allocate. The backward formulas marked *operator-only* use nothing but Python operators
and array methods on their gradient argument, so ``xpnet.autodiff`` calls them with traced
values and gets higher-order derivatives from the same single formula.
"""
from __future__ import annotations

import contextlib

from .routines import (
    ActivationRoutines,
    ConvRoutines,
    DenseRoutines,
    Geometry,
    LossRoutines,
    NormRoutines,
    PoolRoutines,
    RandomRoutines,
    UpdateRoutines,
)
from .stats import (  # noqa: F401 (the names the rest of xpnet imports from here)
    LAUNCHES,
    MATMUL_PRECISIONS,
    TRANSFERS,
    LaunchStats,
    TransferStats,
    get_matmul_precision,
    set_matmul_precision,
)


class Backend(DenseRoutines, ActivationRoutines, LossRoutines, RandomRoutines, NormRoutines,
              Geometry, ConvRoutines, PoolRoutines, UpdateRoutines):
    """Portable routines on ``self.xp``; subclasses provide the array module and transfers."""

    kind = "abstract"
    xp = None

    def __init__(self):
        self._aranges = {}
        self._philox = {}  # key -> Philox's device constants (see routines/random.py's _philox_constants)

    # -- arrays and transfers (each subclass overrides these) ---------------------------
    def from_host(self, array):
        """Copy a NumPy array onto this device (counted as host->device)."""
        raise NotImplementedError

    def to_host(self, array):
        """Copy an array of this device to a NumPy array (counted as device->host)."""
        raise NotImplementedError

    def from_peer(self, array):
        """Copy an array from another device of the same kind onto this one (counted)."""
        raise NotImplementedError

    def upload(self, host, out):
        """Copy the NumPy array ``host`` into the device array ``out`` of its shape (counted
        as host->device): how a streamed batch enters the buffers a recorded step reads."""
        raise NotImplementedError

    overlaps_copies = False  # whether upload_async overlaps the device's work (then fit reads batches ahead)

    def upload_async(self, host, out, after=None):
        """Start copying the NumPy array ``host`` into the device array ``out``, once the
        event ``after`` (the step that last read ``out``) has passed; returns an event that
        marks the copy's end, for ``wait``. Where copies cannot overlap compute (the CPU)
        the copy is made at once and there are no events (None)."""
        self.upload(host, out)
        return None

    def wait(self, event):
        """Make the work queued next wait for ``event`` (None: nothing to wait for)."""

    def step_event(self):
        """An event after the work queued so far (None where work runs at once)."""
        return None

    def free_memory(self):
        """Bytes a new array may still take on this device, or None where that is the
        host's memory (cpu; sim unless given a limit)."""
        return None

    def synchronize(self):
        """Wait until all work queued on this device has finished."""

    scoped = False  # whether activate() matters: a device that has a "current device"

    def activate(self):
        """Context manager that makes this device current for array creation and kernels
        (CuPy's ``with cupy.cuda.Device(i)``); xpnet's layers, losses, optimizers and
        training loop run under their device's."""
        return contextlib.nullcontext()

    def describe(self) -> dict:
        """Facts about this device for ``xpnet info`` (name, memory, versions)."""
        return {}

    def record(self, fn, owners=()):
        """The step ``fn`` as this device runs it best: a callable that, on a device that
        records (sim, CUDA), records fn's device work on its first call and replays it on
        every later one; on the CPU it is fn. The first call returns fn's result; a replay
        returns the same arrays, rewritten. ``owners`` (layers, losses) give up their
        reusable buffers before recording, so the recording owns every buffer it touches.
        """
        return _Recorded(self, fn, owners) if self.records else fn

    records = False  # whether record() records on this device

    def capture(self, fn):
        """Run ``fn()`` once and record it for replay; returns ``(result, replay)``.

        ``replay()`` redoes fn's device work in one launch and returns the arrays fn
        returned while being recorded, rewritten. It reruns no Python: inputs must be fed
        by writing into the buffers fn reads, and fn must not depend on host values that
        change between calls. ``replay`` is None where the backend cannot record (the
        CPU; sim and CUDA override this), and the caller runs fn itself each time.
        """
        return fn(), None



class _Recorded:
    """A step recorded on its first call and replayed after (see ``Backend.record``)."""

    def __init__(self, backend, fn, owners):
        self.backend, self.fn, self.owners = backend, fn, owners
        self.replay = None
        self.recorded = False

    def __call__(self):
        with self.backend.activate():  # the step's device, whatever is current
            if self.replay is not None:
                return self.replay()
            if self.recorded:  # the backend could not record it: run it kernel by kernel
                return self.fn()
            for owner in self.owners:
                clear = getattr(owner, "clear_workspace", None)
                if clear is not None:
                    clear()
            result, self.replay = self.backend.capture(self.fn)
            self.recorded = True  # after: a capture that raised is tried again next call
            return result
