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

import types

import numpy

from ..errors import CaptureError
from .base import TRANSFERS, Backend
from .numpy import PortableNumpyBackend
from .sim_array import (  # noqa: F401 (_device_type is xpnet.device's)
    DLPACK_SIM,
    SimArray,
    _call,
    _device_dtype,
    _device_type,
    _other_device_check,
    _SimGenerator,
    _ufunc_operands,
    _unwrap,
    _wrap,
)
from .sim_tape import (  # noqa: F401 (current_sim_index is the backends')
    _Activation,
    _recording,
    _refuse_while_recording,
    _SimReplay,
    _Tape,
    _tape,
    current_sim_index,
)


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
        self._portable = PortableNumpyBackend()  # runs the routines CUDA fuses (see _one_kernel)

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

