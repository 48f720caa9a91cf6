"""``SimArray``: a NumPy array that follows CuPy's rules (see ``xpnet.backends.sim``), and
the wrapping that every sim operation goes through (unwrap sim arguments, refuse host ones,
count the kernel, wrap the result)."""
from __future__ import annotations

import copy
import operator

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

from ..errors import CaptureError, ImplicitTransferError
from .base import TRANSFERS
from .sim_tape import _Activation, _kernel, _refuse_while_recording, _tape, current_sim_index

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


# xpnet.device.Device, put here by xpnet.device when it loads: the backends never import the
# generic layer above them (an array's .device is the one place sim needs it).
_device_type = [None]


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
        # CuPy raises TypeError here; ImplicitTransferError is one, and the error the docs name
        # (np.asarray(x), host[0] = x and every other way NumPy converts reach this)
        raise ImplicitTransferError(
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
