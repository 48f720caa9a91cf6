"""Explicit copies between host and devices, over trees of arrays, and what they cost.

``to_device`` and ``to_host`` walk nested dicts, lists and tuples (namedtuples too),
copy every array leaf, keep the structure, and leave other leaves as they are. Layers
and models are moved with their ``to`` method. Every copy is counted in
``transfer_stats()``, so a user can see that a training step copies nothing.
"""
from __future__ import annotations

import numpy

from . import backends
from .backends.base import LAUNCHES, TRANSFERS, TransferStats
from .device import CPU, Device, current_device, device_of
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


def to_device(tree, device=None):
    """Copy every array in ``tree`` to ``device`` (default: the current device).

    Arrays already there are returned as they are. A layer or model is moved in place
    with its ``to`` method and returned.
    """
    target = current_device() if device is None else Device(device)
    if hasattr(tree, "to") and hasattr(tree, "params"):
        return tree.to(target)

    def move(leaf):
        return _array_to(leaf, target) if backends.array_device(leaf) is not None else leaf
    return map_tree(move, tree)


def to_host(tree):
    """Copy every device array in ``tree`` to a NumPy array; NumPy arrays stay as they are."""
    def move(leaf):
        return _array_to(leaf, CPU) if backends.array_device(leaf) is not None else leaf
    return map_tree(move, tree)


def asarray(obj, dtype=None, device=None):
    """``obj`` (an array, list or number) as an array on ``device`` (default: current).

    Host data is converted with NumPy first, then copied over (counted).
    """
    target = current_device() if device is None else Device(device)
    if backends.array_device(obj) is None:
        obj = numpy.asarray(obj, dtype=dtype)
    array = _array_to(obj, target)
    if dtype is not None and array.dtype != numpy.dtype(dtype):
        with target.backend.activate():
            array = array.astype(dtype)
    return array


def array_or_host(obj, what: str):
    """``obj`` itself if it is an array of any device, else ``numpy.asarray(obj)`` on the
    host (lists, tuples, numbers); raises TypeError naming ``what`` for anything else."""
    if backends.array_device(obj) is not None:
        return obj
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
