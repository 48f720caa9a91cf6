"""``sim``: a simulated accelerator, so CPU-only machines can prove code moves no data implicitly.

NumPy does the arithmetic, but a ``SimArray`` is its own type and follows CuPy's rules:

- an operation mixing a sim array with a NumPy array raises ``ImplicitTransferError``;
- ``numpy.asarray(sim_array)`` raises ``TypeError`` (use ``xpnet.to_host``);
- Python and NumPy scalars mix freely; reductions return 0-d sim arrays, as CuPy does;
- arrays of two sim devices (``sim:0``, ``sim:1``) do not mix either;
- crossing over (``to_host``/``to_device``, ``.get()``, ``float()``, printing with
  ``repr``/``str``/``format``, ``xp.asarray(host)``) is counted in ``xpnet.transfer_stats()``;
- ``copy.copy``/``copy.deepcopy`` copy on the device (one kernel, no transfer); pickling is
  refused;
- DLPack follows CuPy's rules too: ``xp.from_dlpack`` takes a sim array without a copy
  and refuses host memory (a CPU tensor) as ``cupy.from_dlpack`` does; a host consumer
  (``numpy.from_dlpack``, ``torch.from_dlpack``) is refused with ``xn.to_host`` named;
- the current sim device is per context (thread, asyncio task), 0 unless entered.

Because every operation is the same NumPy call on the same data, results are bit-identical
to the ``cpu`` device. ``SimNamespace`` is the sim device's ``xp``: NumPy's functions
wrapped to unwrap sim arguments, refuse host arrays and wrap results.

Every operation that would be a kernel on a GPU (not a view, not an allocation) counts as
one launch in ``xpnet.launch_stats()``. ``SimBackend.capture`` records a step as CUDA
does: a tape of those kernels, each with the Python values it was called with baked in,
replayed into the same buffers; a host read, a copy from the host, a draw from a
host-side generator or an operation whose result's shape depends on the data (boolean-mask
indexing, ``nonzero``, ``unique``, ...) while recording raises ``xpnet.CaptureError``, and
so does a replay in which a result's shape changed.
"""
from __future__ import annotations

import contextvars
import copy
import operator
import threading
import types

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

from ..errors import CaptureError, ImplicitTransferError
from .base import LAUNCHES, TRANSFERS, Backend
from .numpy import NumpyBackend

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


# Operations whose result's shape depends on the values: CuPy reads a count back to the host
# to size the result (a synchronization), and a recorded step cannot replay another shape.
_SIZED_BY_DATA = frozenset("""
    nonzero argwhere flatnonzero compress extract unique unique_all unique_counts unique_inverse
    unique_values trim_zeros intersect1d setdiff1d setxor1d union1d
""".split())


def _sized_by_data(name, args, kwargs):
    """How this call makes a result shaped by the data (for the error), or None."""
    if name in ("indexing", "assignment"):
        key = args[1]
        if any(type(k) is SimArray and k.dtype.kind == "b" for k in (key if type(key) is tuple else (key,))):
            return "boolean-mask indexing (x[mask])" if name == "indexing" else \
                "boolean-mask assignment (x[mask] = value)"
        return None
    short = name.rsplit(".", 1)[-1]
    if short in _SIZED_BY_DATA:
        return name
    if short == "where" and len(args) + len(kwargs) == 1:
        return f"{name} with a condition only (which is nonzero)"
    return None


def _refuse_sized_by_data(index, name, args, kwargs):
    what = _sized_by_data(name, args, kwargs)
    if what is not None:
        raise CaptureError(
            f"{what} while recording a step on sim:{index}: the shape of its result depends on "
            f"the data (how many entries are true, or distinct), which CuPy reads back to the "
            f"host to size it, and a recorded step (a CUDA graph) would replay it with the shape "
            f"it had when recorded. Keep shapes fixed inside the step: weight by the mask instead "
            f"(x * mask, xp.where(mask, x, 0); a masked mean is (x * mask).sum() / mask.sum()), or "
            f"run the step unrecorded (fit(..., graph=False), or graph_safe = False on your layer "
            f"or loss).")


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


# What ``cupy.ndarray`` has (CuPy 13/14), so sim code cannot lean on a NumPy-only name.
# Methods that compute on the device, called on the NumPy data, sim in and sim out:
_METHODS = frozenset("""
    all any argmax argmin argpartition argsort astype byteswap choose clip compress conj conjugate
    copy cumprod cumsum diagonal dot fill flatten max mean min nonzero partition prod put ravel
    repeat reshape round searchsorted sort squeeze std sum swapaxes take trace transpose var view
""".split())
# Plain attributes (base, real and imag are arrays and come back as sim arrays):
_ATTRIBUTES = frozenset("base dtype flags imag itemsize mT nbytes ndim real shape size strides".split())
# CuPy accepts these kinds of dtype; strings, objects, records and datetimes it refuses.
_DTYPE_KINDS = "biufc"
# DLPack's device type for sim arrays: kDLExtDev, which dlpack.h reserves for extension and
# test devices. Not kDLCUDA: a consumer that believed it would look for a GPU stream, and not
# kDLCPU: a host consumer would read device memory without an explicit copy.
DLPACK_SIM = 12


def _device_dtype(dtype):
    """Refuse a dtype CuPy cannot hold, as ``cupy.asarray`` does (ValueError)."""
    if dtype.kind not in _DTYPE_KINDS:
        raise ValueError(f"Unsupported dtype {dtype} on a CUDA device (and so on sim): only bool, "
                         f"integer, float and complex arrays live on a device. Convert the data "
                         f"to numbers on the host first.")
    return dtype


def _ufunc_operands(inputs, index, name):
    """CuPy's ufuncs take device arrays and scalars only: a list or tuple is a TypeError."""
    for x in inputs:
        if type(x) in (list, tuple) or isinstance(x, (str, bytes)):
            raise TypeError(f"{name}: unsupported operand type {type(x).__name__} for an array on "
                            f"sim:{index} (CuPy refuses it too). Make it an array on the device first: "
                            f"xn.asarray(value, device='sim:{index}').")


def _mixing_error(index, what, op):
    return ImplicitTransferError(
        f"{op}: cannot mix an array on sim:{index} with {what}. Arrays cross between devices "
        f"only explicitly: move it with xn.to_device(x, 'sim:{index}') or xn.to_host(y).")


def _unwrap(obj, index, op):
    """The NumPy data behind ``obj``; refuses host arrays and other devices' arrays."""
    cls = type(obj)
    if cls is SimArray:
        if obj._index != index:
            raise ImplicitTransferError(
                f"{op}: arrays on sim:{index} and sim:{obj._index} met in one operation. "
                f"Copy one explicitly: xn.to_device(x, 'sim:{index}').")
        return obj._data
    if cls is numpy.ndarray:
        raise _mixing_error(index, f"a NumPy array of shape {obj.shape} (host)", op)
    if cls is list or cls is tuple:
        return cls(_unwrap(o, index, op) for o in obj)
    if cls is dict:
        return {k: _unwrap(v, index, op) for k, v in obj.items()}
    if isinstance(obj, numpy.ndarray):  # subclasses (np.matrix, masked arrays)
        raise _mixing_error(index, f"a host array of type {cls.__name__}", op)
    _other_device_check(obj, index, op)
    return obj


def _other_device_check(obj, index, op):
    kind = getattr(type(obj), "__module__", "") or ""
    if kind.startswith("cupy"):
        raise ImplicitTransferError(
            f"{op}: cannot mix an array on sim:{index} with a CuPy array. "
            f"Move it explicitly with xn.to_device(x, 'sim:{index}').")


def _wrap(obj, index):
    cls = type(obj)
    if cls is numpy.ndarray:
        return SimArray(obj, index)
    if isinstance(obj, numpy.generic):  # CuPy returns 0-d arrays where NumPy gives scalars
        return SimArray(numpy.asarray(obj), index, numpy_scalar=True)
    if cls is tuple or cls is list:
        return cls(_wrap(o, index) for o in obj)
    if isinstance(obj, numpy.random.Generator):
        return _SimGenerator(obj, index)
    return obj


def _call(func, index, name, args, kwargs, out=None):
    for o in (out if type(out) is tuple else (out,)):
        if type(o) is SimArray and o._numpy_scalar:
            raise TypeError(
                f"{name}: out= is the result of an operation that NumPy returns as a scalar, not an "
                f"array (a 0-d input or a full reduction), so on the cpu device this call fails "
                f"('return arrays must be of ArrayType'). Allocate the output with xp.empty(...).")
    current = current_sim_index()
    if current != index:
        raise ValueError(
            f"{name}: work on sim:{index} while sim:{current} is the current device. CuPy allocates "
            f"on the current device and cannot launch a kernel on another device's arrays (or does "
            f"so with the wrong device's cuBLAS handle). Run it under its device: "
            f"with xn.use_device('sim:{index}'): ... (inside xpnet: backend.activate()).")
    tape = _tape(index)
    if tape is not None:
        _refuse_sized_by_data(index, name, args, kwargs)
    args, kwargs = _unwrap(args, index, name), _unwrap(kwargs, index, name)
    result = func(*args, **kwargs)
    wrapped = out if out is not None else _wrap(result, index)
    _kernel(index, name, func, args, kwargs, result, wrapped, out is not None, tape)
    return wrapped  # callers that pass out= get the very same sim array back


# xpnet.device.Device, put here by xpnet.device when it loads: the backends never import the
# generic layer above them (an array's .device is the one place sim needs it).
_device_type = [None]


class SimArray(NDArrayOperatorsMixin):
    """An array on a simulated device: NumPy data that refuses to meet host arrays."""

    __slots__ = ("_data", "_index", "_numpy_scalar")

    def __init__(self, data: numpy.ndarray, index: int = 0, numpy_scalar: bool = False):
        self._data = data
        self._index = index
        self._numpy_scalar = numpy_scalar  # NumPy gave a scalar here: not usable as out= on cpu

    # -- what an array is -----------------------------------------------------------
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    nbytes = property(lambda self: self._data.nbytes)
    itemsize = property(lambda self: self._data.itemsize)
    strides = property(lambda self: self._data.strides)
    flags = property(lambda self: self._data.flags)
    T = property(lambda self: SimArray(self._data.T, self._index))
    device_index = property(lambda self: self._index)

    @property
    def device(self):
        """The xpnet ``Device`` holding this array (``xn.device_of`` gives the same)."""
        return _device_type[0](f"sim:{self._index}")

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (SimArray(row, self._index) if isinstance(row, numpy.ndarray) else
                SimArray(numpy.asarray(row), self._index) for row in self._data)

    # Printing copies the array to the host first, as CuPy's repr/str/format do (``get()``):
    # counted as device->host, and refused while recording.
    def _printed(self, what):
        _refuse_while_recording(self._index, f"printing a device array ({what}: a copy to the host)")
        TRANSFERS.record("d2h", self._data.nbytes)
        return self._data

    def __repr__(self):
        body = repr(self._printed("repr"))
        return f"sim_{body[:-1]}, device='sim:{self._index}')" if body.startswith("array(") else body

    def __str__(self):
        return str(self._printed("str"))

    # -- NumPy protocols: the heart of the simulation -------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            f"Implicit conversion of an array on sim:{self._index} to a NumPy array is not "
            f"allowed (CuPy refuses it too). Use xn.to_host(x) to copy it to the host explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for x in inputs:  # NEP 13: a type with its own __array_ufunc__ (a traced value) goes first
            override = getattr(type(x), "__array_ufunc__", None)
            if override is not None and type(x) not in (SimArray, numpy.ndarray) \
                    and not isinstance(x, numpy.generic):
                return NotImplemented
        name = f"numpy.{ufunc.__name__}" if method == "__call__" else f"numpy.{ufunc.__name__}.{method}"
        _ufunc_operands(inputs if method != "at" else inputs[2:], self._index, name)
        out = kwargs.get("out")
        if out is not None and len(out) == 1:
            out = out[0]
        return _call(getattr(ufunc, method), self._index, name, inputs, kwargs, out)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, self._index, f"numpy.{func.__name__}", args, kwargs, kwargs.get("out"))

    # -- indexing --------------------------------------------------------------------
    def __getitem__(self, key):
        return _call(operator.getitem, self._index, "indexing", (self, key), {})

    def __setitem__(self, key, value):
        _call(operator.setitem, self._index, "assignment", (self, key, value), {})

    # -- DLPack: a producer on sim's rules -----------------------------------------------
    def __dlpack_device__(self):
        return (DLPACK_SIM, self._index)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Refused: DLPack hands the consumer this array's memory, and the consumers that
        call it (NumPy, PyTorch, JAX) read host or CUDA memory, so taking it would be an
        implicit device->host copy, which CuPy does not make either. sim's own consumers
        (``xn.asarray``, ``xn.to_device``, the sim ``xp.from_dlpack``) take a sim array as it is."""
        raise BufferError(
            f"__dlpack__: an array on sim:{self._index} (shape {self.shape}, {self.dtype}) can be taken "
            f"by DLPack only on sim (xn.asarray(x, device='sim:{self._index}'), or the sim device's "
            f"xp.from_dlpack(x)); a host consumer (numpy.from_dlpack, torch.from_dlpack) would read "
            f"device memory without an explicit copy. Copy it first: numpy.from_dlpack(xn.to_host(x)) "
            f"or torch.from_dlpack(xn.to_host(x)).")

    # -- explicit and implicit crossings, counted as CuPy's would be copies -------------
    def get(self):
        """Copy to a NumPy array (CuPy's ``ndarray.get``); counted as device->host."""
        _refuse_while_recording(self._index, "a copy to the host (get, to_host)")
        TRANSFERS.record("d2h", self._data.nbytes)
        return self._data.copy()

    def set(self, array):
        """Copy a NumPy array into this one (CuPy's ``ndarray.set``); counted as host->device."""
        _refuse_while_recording(self._index, "a copy from the host (set)")
        TRANSFERS.record("h2d", array.nbytes)
        self._data[...] = array

    def _scalar(self):
        _refuse_while_recording(self._index, "reading a device value on the host (float, int, bool, "
                                             "item, tolist, formatting, or a Python branch on it)")
        TRANSFERS.record("d2h", self._data.nbytes)
        return self._data

    def item(self, *args):
        return self._scalar().item(*args)

    def tolist(self):
        return self._scalar().tolist()

    def __float__(self):
        return float(self._scalar())

    def __int__(self):
        return int(self._scalar())

    def __bool__(self):
        return bool(self._scalar())

    def __complex__(self):
        return complex(self._scalar())

    def __format__(self, spec):
        data = self._printed("format")
        return format(data.item() if data.ndim == 0 else data, spec)

    def _host_read(self, name):
        _refuse_while_recording(self._index, f"{name}, a read of the data on the host")
        TRANSFERS.record("d2h", self._data.nbytes)
        return getattr(self._data, name)

    tobytes = property(lambda self: self._host_read("tobytes"))
    tofile = property(lambda self: self._host_read("tofile"))
    dump = property(lambda self: self._host_read("dump"))
    dumps = property(lambda self: self._host_read("dumps"))

    # -- every other cupy.ndarray method: same name, same arguments, sim in and sim out --
    def __getattr__(self, name):
        if name in _ATTRIBUTES:
            return _wrap(getattr(self._data, name), self._index)
        if name not in _METHODS:
            raise AttributeError(
                f"'SimArray' object has no attribute {name!r}: cupy.ndarray has none either, so "
                f"code that needs it would fail on a GPU. Copy to the host first (xn.to_host(x)).")
        attr = getattr(self._data, name)
        index = self._index

        def method(*args, **kwargs):
            return _call(attr, index, f"ndarray.{name}", args, kwargs, kwargs.get("out"))
        return method

    # -- copies stay on the device (as CuPy's copy.copy/deepcopy); pickling is refused --
    def __copy__(self):
        return self._device_copy("copy.copy")

    def __deepcopy__(self, memo):
        return self._device_copy("copy.deepcopy")

    def _device_copy(self, name):
        """A new array on the same device: one kernel, no host round trip, under the array's
        own device whatever is current (CuPy's ``__deepcopy__`` enters ``self.device``)."""
        with _Activation(self._index):
            twin = _call(numpy.copy, self._index, name, (self,), {})
        twin._numpy_scalar = self._numpy_scalar
        return twin

    def __reduce__(self):
        raise TypeError(
            f"sim arrays cannot be pickled: this one (shape {self.shape}, {self.dtype}) is on "
            f"sim:{self._index}, and pickling would read it on the host without an explicit copy. "
            f"Pickle xn.to_host(x) instead; save a model with xn.save(model, path); "
            f"copy.deepcopy(x) copies it on its device.")


class _SimGenerator:
    """numpy.random.Generator whose draws land on the sim device."""

    def __init__(self, gen, index):
        self._gen, self._index = gen, index

    def __deepcopy__(self, memo):  # the generator's state is host memory, as on cpu
        return _SimGenerator(copy.deepcopy(self._gen, memo), self._index)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_gen", "_index"):
            raise AttributeError(name)  # not the generator's: copy and pickle probe these
        attr = getattr(self._gen, name)
        if not callable(attr):
            return attr
        index = self._index

        def draw(*a, **k):
            _refuse_while_recording(index, f"a draw from a host-side generator (Generator.{name})")
            return _call(attr, index, f"Generator.{name}", a, k, k.get("out"))
        return draw


class _SimUfunc:
    """A NumPy ufunc on the sim device: calls and ``.at``/``.reduce``/... take sim arrays."""

    def __init__(self, ufunc, index):
        self._ufunc, self._index = ufunc, index
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        name = f"numpy.{self.__name__}"
        _ufunc_operands(args, self._index, name)
        return _call(self._ufunc, self._index, name, args, kwargs, kwargs.get("out"))

    def __copy__(self):
        return self  # a function, as NumPy's ufuncs are under copy and deepcopy

    def __deepcopy__(self, memo):
        return self

    def __getattr__(self, method):
        if method.startswith("__") or method in ("_ufunc", "_index"):
            raise AttributeError(method)
        attr = getattr(self._ufunc, method)
        if not callable(attr):
            return attr
        index, name = self._index, f"numpy.{self.__name__}.{method}"
        return lambda *a, **k: _call(attr, index, name, a, k, k.get("out"))


class SimNamespace(types.SimpleNamespace):
    """The ``xp`` of a sim device: NumPy's API, creating and taking sim arrays only."""

    def __init__(self, module, index: int):
        super().__init__()
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "ndarray", SimArray)

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if isinstance(attr, types.ModuleType):
            wrapped = SimNamespace(attr, self._index)
        elif isinstance(attr, numpy.ufunc):
            wrapped = _SimUfunc(attr, self._index)
        elif isinstance(attr, type) or not callable(attr):
            wrapped = attr  # dtypes, classes, constants (float32, newaxis, pi) pass through
        else:
            index, qual = self._index, f"{self._module.__name__}.{name}"

            def wrapped(*args, **kwargs):
                return _call(attr, index, qual, args, kwargs, kwargs.get("out"))
            wrapped.__name__ = name
            wrapped.__doc__ = getattr(attr, "__doc__", None)
        object.__setattr__(self, name, wrapped)  # cache: __getattr__ runs once per name
        return wrapped

    def __repr__(self):
        return f"<sim namespace of {self._module.__name__} on sim:{self._index}>"

    def __reduce__(self):
        raise TypeError(
            f"cannot pickle or copy {self!r}: it stands for a module (numpy, cupy), which cannot "
            f"be copied on cpu or cuda either. Keep the device instead (self.device, or "
            f"xn.device_of(x)) and take its .xp when needed.")

    # CuPy's host-to-device entry points: they copy, and the copy is counted.
    def asarray(self, obj, dtype=None, order=None):
        if type(obj) is SimArray:
            _unwrap(obj, self._index, "asarray")
            if obj._numpy_scalar:  # numpy.asarray turns NumPy's scalar into an array
                obj = SimArray(obj._data, self._index)
            return obj if dtype is None or obj.dtype == dtype else obj.astype(dtype)
        return self.array(obj, dtype=dtype, order=order)

    def array(self, obj, dtype=None, copy=True, order=None, ndmin=0):
        if type(obj) is SimArray:
            data = _unwrap(obj, self._index, "array")
            return SimArray(numpy.array(data, dtype=dtype, copy=copy, order=order, ndmin=ndmin), self._index)
        _other_device_check(obj, self._index, "array")
        _refuse_while_recording(self._index, "a copy from the host (asarray/array of host data)")
        host = numpy.array(obj, dtype=dtype, order=order, ndmin=ndmin)
        _device_dtype(host.dtype)
        TRANSFERS.record("h2d", host.nbytes)
        return SimArray(host, self._index)

    def asnumpy(self, obj):
        """CuPy's ``asnumpy``: a counted device->host copy."""
        return obj.get() if type(obj) is SimArray else numpy.asarray(obj)

    def from_dlpack(self, obj, *, device=None, copy=None):
        """CuPy's ``from_dlpack``: a sim array comes as it is (the same memory, on the sim
        device it lives on, as CuPy's array stays on its GPU), or as a copy on that device
        with ``copy=True``; host memory is refused, as CuPy refuses it (a copy from the host
        is ``xn.asarray``'s, and is counted)."""
        if device is not None:
            raise NotImplementedError("from_dlpack(device=...) is not supported (nor by CuPy's "
                                      "from_dlpack); move the result with xn.to_device.")
        if type(obj) is SimArray:
            if copy:
                return obj._device_copy("from_dlpack(copy=True)")
            return SimArray(obj._data, obj._index)
        where = getattr(obj, "__dlpack_device__", None)
        if where is None:
            raise TypeError(f"from_dlpack expects an array with __dlpack__ and __dlpack_device__, "
                            f"got {type(obj).__name__}.")
        kind, _ = where()
        if kind in (1, 3):  # kDLCPU, kDLCUDAHost
            raise TypeError(
                f"from_dlpack: a {type(obj).__name__} in host memory cannot be imported onto "
                f"sim:{self._index} without a copy (cupy.from_dlpack refuses CPU arrays too). Copy it "
                f"explicitly: xn.asarray(x, device='sim:{self._index}').")
        raise TypeError(f"from_dlpack: a {type(obj).__name__} on DLPack device type {kind} cannot be "
                        f"imported onto sim:{self._index}; copy it to the host in its own library, "
                        f"then xn.asarray(x, device='sim:{self._index}').")


class SimBackend(Backend):
    kind = "sim"
    scoped = True

    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index
        self.xp = SimNamespace(numpy, index)
        self.events = []  # the stream/event log of streamed batches (see upload_async)
        self._portable = NumpyBackend()  # runs the routines CUDA fuses (see _one_kernel)

    records = True
    overlaps_copies = True  # as CUDA: fit reads a Loader's batches ahead on a thread

    def activate(self):
        return _Activation(self.index)

    # -- the routines the CUDA backend runs as one kernel each (cupy.py's _kernels) -------
    def _one_kernel(self, name, out, *args):
        """Run the portable routine ``name`` on the data behind ``args`` as CUDA runs it:
        one kernel, counted and taped as one, writing into arrays among ``args`` (``out``
        is the one it returns). NumPy does the same arithmetic, so results stay those of
        the cpu device."""
        return _call(getattr(self._portable, name), self.index, name, args, {}, out=out)

    def _dropout_mask(self, key, offset, shape, p, dtype, out):
        out = self.xp.empty(shape, dtype=dtype) if out is None else out
        return self._one_kernel("_dropout_mask", out, key, offset, shape, p, dtype, out)

    def adam_rate(self, lr, t, beta1, beta2, out, work):
        return self._one_kernel("adam_rate", out, lr, t, beta1, beta2, out, work)

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2, eps, scratch):
        self._one_kernel("adam_update", p, p, g, m, v, lr_t, beta1, beta2, eps, scratch)

    def from_host(self, array):
        # A real device holds its own copy: later writes to the host array must not show.
        _refuse_while_recording(self.index, "a copy from the host (to_device)")
        _device_dtype(array.dtype)
        TRANSFERS.record("h2d", array.nbytes)
        return SimArray(numpy.array(array, copy=True), self.index)

    def to_host(self, array):
        return array.get()

    memory_limit = None  # bytes: set it to model a device smaller than the data (fit then streams)

    def free_memory(self):
        return self.memory_limit

    def upload(self, host, out):
        out.set(host)  # counted, and refused while recording, as CuPy's ndarray.set
        return out

    # Streams and events, as CUDA would order them; sim copies at once and logs the order in
    # ``events`` (("upload", event, after), ("wait", event), ("step", event)) for tests.
    def upload_async(self, host, out, after=None):
        self.upload(host, out)
        return self._event("upload", after)

    def wait(self, event):
        if event is not None:
            self.events.append(("wait", event))

    def step_event(self):
        return self._event("step")

    def _event(self, kind, *more):
        self._events_made = getattr(self, "_events_made", 0) + 1
        self.events.append((kind, self._events_made, *more))
        return self._events_made

    def from_peer(self, array):
        _refuse_while_recording(self.index, "a copy from another device")
        TRANSFERS.record("d2d", array.nbytes)
        return SimArray(array._data.copy(), self.index)

    def capture(self, fn):
        """Run ``fn()`` once and return ``(result, replay)``, as CUDA does.

        CUDA records without running; sim records the replay's first call while running
        it (so each call still takes the step exactly once), with CUDA's rules enforced.
        """
        return fn(), _SimReplay(self, fn)

    def _record(self, fn):
        tapes = _recording.__dict__.setdefault("tapes", {})
        if self.index in tapes:
            raise CaptureError(f"a step is already being recorded on sim:{self.index}; "
                               f"recordings do not nest.")
        tape = tapes[self.index] = _Tape(self.index)
        try:
            result = fn()
        finally:
            del tapes[self.index]
        return tape, result
