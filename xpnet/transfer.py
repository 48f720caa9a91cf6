"""Explicit copies between host and devices, over trees of arrays, and what they cost.

``to_device`` and ``to_host`` walk nested dicts, lists and tuples (namedtuples too),
copy every array leaf, keep the structure, and leave other leaves as they are. Layers
and models are moved with their ``to`` method. Every copy is counted in
``transfer_stats()``, so a user can see that a training step copies nothing.

Arrays of other libraries come in by DLPack (``__dlpack__``: PyTorch and JAX tensors,
anything of the array API): without a copy where they already sit on the target device
(a CPU tensor on cpu, a CUDA tensor on its own GPU), by one counted copy otherwise.
xpnet's arrays leave the same way: NumPy's and CuPy's own ``__dlpack__``; sim arrays go
only to sim (a host consumer is refused and pointed at ``to_host``, as CuPy's would be).
"""
from __future__ import annotations

import numpy

from . import backends
from .backends.base import LAUNCHES, TRANSFERS, TransferStats
from .device import CPU, Device, current_device, device_of
from .errors import DeviceError
from .tree import map_tree


def _array_to(array, target: Device):
    source = device_of(array)
    if source == target:
        return array
    if isinstance(array, numpy.generic):
        array = numpy.asarray(array)
    if source.kind == target.kind:
        return target.backend.from_peer(array)
    host = array if source.kind == "cpu" else source.backend.to_host(array)
    return host if target.kind == "cpu" else target.backend.from_host(host)


# DLPack device types (dlpack.h's DLDeviceType) whose memory xpnet can take.
_DLPACK_HOST = {1: "kDLCPU", 3: "kDLCUDAHost"}
_DLPACK_CUDA = {2: "kDLCUDA", 13: "kDLCUDAManaged"}


def is_dlpack(obj) -> bool:
    """Whether ``obj`` is an array of another library that DLPack can bring in (it has
    ``__dlpack__`` and ``__dlpack_device__``); xpnet's own arrays are not counted here."""
    return (backends.array_device(obj) is None and hasattr(obj, "__dlpack__")
            and hasattr(obj, "__dlpack_device__"))


def _dlpack_source(obj) -> Device:
    """The device whose array module can take ``obj`` by DLPack without a copy."""
    kind, index = obj.__dlpack_device__()
    kind, index = int(kind), int(index)
    name = type(obj).__name__
    if kind in _DLPACK_HOST:
        return CPU
    if kind in _DLPACK_CUDA:
        try:
            return Device(f"cuda:{index}")
        except DeviceError as exc:
            raise DeviceError(
                f"a {name} on CUDA device {index} ({_DLPACK_CUDA[kind]}) can come in only through CuPy, "
                f"and CUDA cannot be used here: {exc} Copy it to the host in its own library first "
                f"(tensor.cpu() in PyTorch).") from None
    raise TypeError(f"a {name} on DLPack device type {kind} (device {index}): xpnet takes DLPack arrays "
                    f"in host memory ({', '.join(_DLPACK_HOST.values())}) or on a CUDA GPU "
                    f"({', '.join(_DLPACK_CUDA.values())}). Copy it to the host in its own library first.")


def _from_dlpack(obj, target: Device):
    """``obj`` (an array of another library) as an array of ``target``: taken by DLPack onto
    the device it sits on (no copy: NumPy's or CuPy's ``from_dlpack``), then moved as any
    xpnet array is (no copy if that is ``target``, else one counted copy)."""
    source = _dlpack_source(obj)
    try:
        with source.backend.activate():
            array = source.xp.from_dlpack(obj)
    except (BufferError, RuntimeError) as exc:  # a dtype NumPy lacks (bfloat16), a tensor that needs grad
        raise TypeError(f"a {type(obj).__name__} could not be taken by DLPack onto {source} "
                        f"({type(exc).__name__}: {exc}). Convert it in its own library first "
                        f"(detached, to a float or integer dtype).") from None
    return _array_to(array, target)


def to_device(tree, device=None):
    """Copy every array in ``tree`` to ``device`` (default: the current device).

    Arrays already there are returned as they are; so are arrays of other libraries that
    DLPack can take there without a copy (a PyTorch CPU tensor on cpu), which come back as
    xpnet arrays sharing their memory. A layer or model is moved in place with its ``to``
    method and returned.
    """
    target = current_device() if device is None else Device(device)
    if hasattr(tree, "to") and hasattr(tree, "params"):
        return tree.to(target)

    def move(leaf):
        if backends.array_device(leaf) is not None:
            return _array_to(leaf, target)
        return _from_dlpack(leaf, target) if is_dlpack(leaf) else leaf
    return map_tree(move, tree)


def to_host(tree):
    """Copy every array in ``tree`` to a NumPy array of its own, on every device alike: a
    cpu array is copied too (it is the cpu device's memory, which later steps change, as a
    GPU's), so a snapshot taken with ``to_host`` never moves on. NumPy scalars and
    memory-maps (host data on file, never a device's) stay as they are, and arrays of other
    libraries in host memory come back as NumPy arrays sharing it (DLPack)."""
    def move(leaf):
        where = backends.array_device(leaf)
        if where == ("cpu", 0):
            return leaf if isinstance(leaf, (numpy.generic, numpy.memmap)) else leaf.copy()
        if where is not None:
            return _array_to(leaf, CPU)
        return _from_dlpack(leaf, CPU) if is_dlpack(leaf) else leaf
    return map_tree(move, tree)


def asarray(obj, dtype=None, device=None):
    """``obj`` (an array, list or number, or an array of another library with ``__dlpack__``)
    as an array on ``device`` (default: current).

    Host data is converted with NumPy first, then copied over (counted). An array of
    another library comes by DLPack: shared, not copied, where it already sits on
    ``device`` (a PyTorch CPU tensor on cpu, a CUDA tensor on its GPU), else one counted copy.
    """
    target = current_device() if device is None else Device(device)
    if is_dlpack(obj):
        array = _from_dlpack(obj, target)
    else:
        if backends.array_device(obj) is None:
            obj = numpy.asarray(obj, dtype=dtype)
        array = _array_to(obj, target)
    if dtype is not None and array.dtype != numpy.dtype(dtype):
        with target.backend.activate():
            array = array.astype(dtype)
    return array


def array_or_host(obj, what: str):
    """``obj`` itself if it is an array of any device, an array of another library taken by
    DLPack where it sits (no copy), else ``numpy.asarray(obj)`` on the host (lists, tuples,
    numbers); raises TypeError naming ``what`` for anything else, arrays of objects or
    strings included."""
    if backends.array_device(obj) is not None:
        array = obj
    elif is_dlpack(obj):  # another library's array: taken where it sits (a CUDA tensor stays on its GPU)
        array = _from_dlpack(obj, _dlpack_source(obj))
    else:
        try:
            array = numpy.asarray(obj)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise TypeError(f"{what} must be an array or something numpy.asarray accepts, got "
                            f"{type(obj).__name__} ({exc}).") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{what} must hold numbers, got {type(obj).__name__} of {array.dtype}.")
    return array


def transfer_stats() -> TransferStats:
    """Counts and bytes of host->device, device->host and device->device copies so far.

    Subtract two snapshots to see what a piece of code copied. On CUDA only copies made
    through xpnet are seen (not ones a user makes with CuPy directly).
    """
    return TRANSFERS.snapshot()


def launch_stats() -> dict:
    """Device work so far, per device name: ``LaunchStats(kernels, launches)``.

    Counted exactly on sim, where every operation that would be a GPU kernel (not a view,
    not an allocation) is one; a replayed recording is one launch of all its kernels.
    Subtract two snapshots of one device to see what a piece of code ran. CUDA and the
    CPU are not counted.
    """
    return LAUNCHES.snapshot()


def reset_transfer_stats() -> None:
    """Set every transfer counter back to zero."""
    TRANSFERS.reset()
