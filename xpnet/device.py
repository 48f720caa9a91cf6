"""Devices: which one code runs on, and how that is chosen.

The current device comes from the innermost ``with use_device(...)`` of this context (a
context variable: each thread, and each asyncio task, has its own), else from the
``XPNET_DEVICE`` environment variable, else ``auto``: the first usable CUDA device, or
the CPU. A device named explicitly is either had or refused with a ``DeviceError``,
never silently replaced by another.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re

from . import _launch, backends
from .errors import DeviceError, ImplicitTransferError

VALID = ", ".join(kind.names() for kind in backends.KINDS.values()) + ", auto"
_SPEC = re.compile(r"^(" + "|".join(map(re.escape, backends.KINDS)) + r")(?::(\d+))?$")


class Device:
    """A device by kind and index: ``Device("cuda:0")``, ``Device("cpu")``, ``Device("sim:1")``.

    Equal and hashable by (kind, index). ``Device("cuda")`` means ``cuda:0`` and
    ``Device("auto")`` resolves at once to the device auto-selection picks. Asking for a
    CUDA device that cannot be used raises ``DeviceError`` saying why.
    """

    __slots__ = ("kind", "index", "_backend")

    def __new__(cls, spec="auto", *, _source=None):
        if isinstance(spec, Device):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"Device(spec) takes a string such as 'cuda:0' or a Device, "
                            f"got {type(spec).__name__} {spec!r}. Valid: {VALID}.")
        source = _source or f"Device({spec!r})"
        text = spec.strip().lower()
        if text in ("", "auto"):
            return _auto_device()
        match = _SPEC.match(text)
        if match is None:
            raise DeviceError(f"{source} is not a device. Valid: {VALID}.")
        kind, index = match.group(1), int(match.group(2) or 0)
        known = backends.KINDS[kind]
        if not known.indexed and index != 0:
            raise DeviceError(f"{source} asks for {known.title} {index}, but the host is one device. "
                              f"Valid: {VALID}.")
        reason = known.unavailable(index)
        if reason is not None:
            raise DeviceError(f"{source} asks for {known.title} {index}, but {reason}. "
                              f"Valid here: {_valid_here()}.")
        self = object.__new__(cls)
        self.kind, self.index, self._backend = kind, index, None
        return self

    @property
    def name(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{self.index}"

    @property
    def backend(self):
        """The backend object: the device's numeric routines and transfers."""
        if self._backend is None:
            self._backend = backends.get_backend(self.kind, self.index)
        return self._backend

    @property
    def xp(self):
        """The array module: numpy, cupy, or the sim namespace."""
        return self.backend.xp

    def synchronize(self) -> None:
        """Wait for all work queued on this device (a no-op on cpu and sim)."""
        self.backend.synchronize()

    def __eq__(self, other):
        return isinstance(other, Device) and (self.kind, self.index) == (other.kind, other.index)

    def __hash__(self):
        return hash((self.kind, self.index))

    def __repr__(self):
        return f"Device({self.name!r})"

    def __str__(self):
        return self.name

    def __reduce__(self):
        return (Device, (self.name,))


backends.sim._device_type[0] = Device  # what a sim array's .device gives

CPU = object.__new__(Device)
CPU.kind, CPU.index, CPU._backend = "cpu", 0, None


def _valid_here() -> str:
    names = backends.cuda_device_names()
    cuda = ", cuda, " + ", ".join(f"cuda:{i}" for i in range(len(names))) if names else ""
    return f"cpu, sim, auto{cuda}"


def _auto_device() -> Device:
    """The first usable GPU, else the CPU; under an MPI launch, the GPU of this rank's
    place on its host (ranks on one host never share a GPU by accident)."""
    if backends.cuda_unavailable_reason() is not None:
        return CPU
    gpus, local = len(backends.cuda_device_names()), _launch.local_size()
    if local > gpus:
        raise DeviceError(f"{local} MPI ranks on this host but {gpus} CUDA device(s): auto gives each rank "
                          f"a GPU of its own. Launch at most {gpus} rank(s) a host, or pick devices "
                          f"explicitly (XPNET_DEVICE=cpu, or cuda:N per rank).")
    return Device(f"cuda:{_launch.local_rank()}")


def auto_device_reason() -> str:
    """A sentence on what ``auto`` picks here and why."""
    reason = backends.cuda_unavailable_reason()
    if reason is None:
        return f"auto picks cuda:0 ({backends.cuda_device_names()[0]})"
    return f"auto picks cpu because {reason}"


_current: contextvars.ContextVar = contextvars.ContextVar("xpnet_device", default=None)
_env_cache: dict = {}


def _env_device() -> Device:
    spec = os.environ.get("XPNET_DEVICE", "")
    device = _env_cache.get(spec)
    if device is None:
        device = _env_cache[spec] = Device(spec, _source=f"XPNET_DEVICE={spec!r}")
    return device


def current_device() -> Device:
    """The device of the innermost ``use_device``, else ``XPNET_DEVICE``, else auto."""
    device = _current.get()
    return device if device is not None else _env_device()


@contextlib.contextmanager
def use_device(spec):
    """Make ``spec`` the current device inside the block; nests, and is per context: each
    thread and each asyncio task has its own, so tasks that await inside their blocks do
    not change each other's device. (On CUDA, CuPy's own current device is per thread:
    xpnet's calls each run under their arrays' device, but raw CuPy operations interleaved
    across tasks on different GPUs are not covered.)"""
    device = Device(spec)
    token = _current.set(device)
    try:
        with device.backend.activate():
            yield device
    finally:
        _current.reset(token)


def available_devices() -> list:
    """Every device usable here: cpu, sim, then each CUDA device CuPy can use."""
    devices = [CPU, Device("sim")]
    devices += [Device(f"cuda:{i}") for i in range(len(backends.cuda_device_names()))]
    return devices


def device_of(array) -> Device:
    """The device an array lives on (NumPy arrays and scalars: cpu)."""
    where = backends.array_device(array)
    if where is None:
        where = _traced_device(array)
    if where is None:
        raise TypeError(f"device_of expects an array (NumPy, CuPy or sim), got "
                        f"{type(array).__name__}. Python numbers and lists live on no device.")
    kind, index = where
    return CPU if kind == "cpu" else Device(f"{kind}:{index}")


def _traced_device(obj):
    data = getattr(obj, "_xpnet_array", None)  # autodiff's traced values carry their array
    return None if data is None else backends.array_device(data)


def common_device(arrays, op="get_array_module"):
    """The one device all arrays among ``arrays`` live on (None if there are none).

    Python and NumPy scalars are skipped: they mix with any device, as in CuPy.
    """
    import numpy
    found = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, complex, bool, numpy.generic)):
            continue
        where = backends.array_device(a) or _traced_device(a)
        if where is None:
            continue
        if found is None:
            found = where
        elif where != found:
            first, second = (f"{k}" if k == "cpu" else f"{k}:{i}" for k, i in (found, where))
            raise ImplicitTransferError(
                f"{op}: arrays on {first} and {second} met in one call; xpnet never copies "
                f"implicitly. Move one with xn.to_device(x, '{first}') or xn.to_host(x).")
    if found is None:
        return None
    return CPU if found[0] == "cpu" else Device(f"{found[0]}:{found[1]}")


def get_array_module(*arrays):
    """The array module of the arrays' device (numpy when none is an array).

    Like ``cupy.get_array_module``, but sim-aware, and it raises ``ImplicitTransferError``
    when the arrays live on different devices rather than picking one.
    """
    device = common_device(arrays)
    if device is None:
        import numpy
        return numpy
    return device.xp
