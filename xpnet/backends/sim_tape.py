"""sim's model of a GPU's queue: which operations are kernels (counted in
``xpnet.launch_stats()``), the current sim device (per context, as ``use_device``), and the
tape ``SimBackend.capture`` records kernels on and replays, under CUDA graphs' rules."""
from __future__ import annotations

import contextvars
import threading

import numpy

from ..errors import CaptureError
from .base import LAUNCHES

# Functions that allocate or only look at metadata: no kernel on a GPU.
_NO_KERNEL = frozenset("""
    empty empty_like shape ndim size result_type may_share_memory shares_memory broadcast_shapes
    can_cast promote_types iscomplexobj isrealobj isscalar
""".split())


_recording = threading.local()  # .tapes: sim device index -> the _Tape recording there


# The current sim device (CuPy's current device), per context as ``use_device`` is: each
# thread starts at sim:0, and each asyncio task keeps its own while others run between awaits.
_current = contextvars.ContextVar("xpnet_sim_device", default=0)


def current_sim_index() -> int:
    """The sim device that is current in this context (thread, asyncio task): 0 unless a
    ``SimBackend.activate()`` (``xn.use_device('sim:N')``) says otherwise, as CuPy's
    current device is 0 by default."""
    return _current.get()


class _Activation:
    """``with backend.activate():`` for sim: makes sim:N current, restores on exit."""

    __slots__ = ("index", "token")

    def __init__(self, index):
        self.index = index

    def __enter__(self):
        self.token = _current.set(self.index)

    def __exit__(self, *exc):
        _current.reset(self.token)


def _tape(index):
    tapes = getattr(_recording, "tapes", None)
    return tapes.get(index) if tapes else None


def _refuse_while_recording(index, what):
    """CUDA refuses a synchronizing call while capturing; sim refuses it the same way."""
    if _tape(index) is not None:
        raise CaptureError(
            f"{what} while recording a step on sim:{index}. A recorded step (a CUDA graph) runs "
            f"without Python: it cannot read device values on the host, copy from the host or "
            f"draw from a host-side generator. Keep such work outside the step, or keep the "
            f"value on the device.")


def _arrays(obj):
    """The NumPy arrays among unwrapped arguments (nested lists, tuples, dicts)."""
    if isinstance(obj, numpy.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _arrays(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays(o)


def _kernel(index, name, func, args, kwargs, result, wrapped, wrote_out, tape):
    """Count (and, while recording on ``tape``, tape) one kernel, unless the call made none."""
    short = name.rsplit(".", 1)[-1]
    if short in _NO_KERNEL:
        return
    targets = None
    if not wrote_out and result is not None:
        results = result if type(result) in (tuple, list) else (result,)
        if not all(isinstance(r, (numpy.ndarray, numpy.generic)) for r in results):
            return  # a Python value (a dtype, a shape, a flag): no device work
        inputs = list(_arrays((args, kwargs)))
        if all(isinstance(r, numpy.ndarray) and any(numpy.may_share_memory(r, a) for a in inputs)
               for r in results):
            return  # a view of an input: no device work
        outs = wrapped if type(wrapped) in (tuple, list) else (wrapped,)
        targets = tuple(w._data for w in outs)
    LAUNCHES.record(f"sim:{index}", 1, 1)
    if tape is not None:
        tape.append((func, args, kwargs, targets, name))


class _Tape:
    """Recorded kernels: (function, its unwrapped arguments, the arrays its results went
    to, or None where it wrote in place, the operation's name). Replaying calls each again
    with the very same arguments, Python values included, and writes into the very same
    arrays; a result whose shape is not the recorded one raises ``CaptureError`` (a CUDA
    graph's buffers have fixed sizes)."""

    def __init__(self, index):
        self.index, self.entries = index, []
        self.append = self.entries.append

    def replay(self):
        for func, args, kwargs, targets, name in self.entries:
            result = func(*args, **kwargs)
            if targets is not None:
                for target, value in zip(targets, result if type(result) in (tuple, list) else (result,)):
                    if numpy.shape(value) != target.shape:
                        raise CaptureError(
                            f"{name} gave a result of shape {numpy.shape(value)} when replaying a "
                            f"step recorded on sim:{self.index}, where it had shape {target.shape}: "
                            f"its shape depends on the data, and a recorded step (a CUDA graph) "
                            f"writes into buffers of the recorded size. Keep shapes fixed inside "
                            f"the step, or run it unrecorded (fit(..., graph=False)).")
                    target[...] = value
        LAUNCHES.record(f"sim:{self.index}", len(self.entries), 1)


class _SimReplay:
    """A recorded step on sim. Its first call records the step while running it (the
    eager run before it, like CUDA's warm-up, did the step's one-time work: buffers,
    optimizer state); every later call replays the tape and returns what the step
    returned, rewritten."""

    def __init__(self, backend, fn):
        self.backend, self.fn, self.tape, self.result = backend, fn, None, None

    @property
    def kernels(self) -> int:
        """Kernels in one replay (None until recorded)."""
        return None if self.tape is None else len(self.tape.entries)

    def __call__(self):
        if self.tape is None:
            self.tape, self.result = self.backend._record(self.fn)
            return self.result
        self.tape.replay()
        return self.result

