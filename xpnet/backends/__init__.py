"""The only package that knows which array libraries exist.

``KINDS`` names each kind of device (cpu, sim, cuda) with its backend, its array type, its
availability probe and its name format; ``get_backend(kind, index)`` returns the backend
object for a device; ``array_device(obj)``
says which device an array lives on without importing CuPy unless CuPy is already loaded;
``cuda_unavailable_reason()`` says why CUDA cannot be used (None when it can).
"""
from __future__ import annotations

import copyreg
import dataclasses
import functools
import importlib.util
import sys
import threading
from typing import Callable

from .base import TRANSFERS, Backend
from .numpy import NumpyBackend
from .sim import SimArray, SimBackend

__all__ = [
    "Backend", "TRANSFERS", "KINDS", "Kind", "get_backend", "array_device", "cuda_unavailable_reason",
    "cuda_device_names", "SimArray",
]

@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of device, as the rest of xpnet sees it: every fact about one lives here.

    ``backend(index)`` builds its backend (importing its array library then); ``holds(obj)``
    is the index of the device holding array ``obj`` of this kind, or None; ``unavailable
    (index)`` says why that device cannot be had (None when it can); ``indexed`` is whether
    ``kind:N`` names more than one device (the host is one: ``cpu``)."""

    name: str
    title: str  # for messages: "CUDA device 1", "CPU"
    backend: Callable[[int], Backend]
    holds: Callable[[object], "int | None"]
    unavailable: Callable[[int], "str | None"] = lambda index: None
    indexed: bool = True

    def names(self) -> str:
        """The device names of this kind, for messages: ``sim, sim:N``."""
        return f"{self.name}, {self.name}:N" if self.indexed else self.name


def _cupy_backend(index):
    from .cupy import CupyBackend
    copyreg.pickle(CupyBackend, _as_its_device)
    return CupyBackend(index)


def _numpy_holds(obj):
    import numpy
    return 0 if isinstance(obj, (numpy.ndarray, numpy.generic)) else None


def _cupy_holds(obj):
    cupy = sys.modules.get("cupy")  # an array of CuPy cannot exist before CuPy is imported
    return obj.device.id if cupy is not None and isinstance(obj, cupy.ndarray) else None


KINDS = {kind.name: kind for kind in (
    Kind("cpu", "CPU", lambda index: NumpyBackend(), _numpy_holds, indexed=False),
    Kind("sim", "sim device", SimBackend, lambda obj: obj.device_index if isinstance(obj, SimArray) else None),
    Kind("cuda", "CUDA device", _cupy_backend, _cupy_holds, lambda index: cuda_unavailable_reason(index)),
)}

_backends: dict = {}
_lock = threading.Lock()


def get_backend(kind: str, index: int) -> Backend:
    """The (cached) backend for device kind/index; CuPy is imported here, on first CUDA use."""
    key = (kind, index)
    backend = _backends.get(key)
    if backend is None:
        with _lock:
            backend = _backends.get(key)
            if backend is None:
                backend = _backends[key] = KINDS[kind].backend(index)
    return backend


def _as_its_device(backend):
    """A backend is its device's: ``copy.deepcopy`` of a model (or unpickling one) gives back
    the device's one backend, not a second with its own caches and handles."""
    return get_backend, (backend.kind, getattr(backend, "index", 0))


copyreg.pickle(NumpyBackend, _as_its_device)
copyreg.pickle(SimBackend, _as_its_device)


def array_device(obj):
    """(kind, index) of the device holding array ``obj``, or None if it is not an array.

    NumPy arrays and NumPy scalars live on ("cpu", 0). CuPy arrays are recognised only
    when CuPy has been imported already: an array of it cannot exist otherwise.
    """
    for kind in KINDS.values():
        index = kind.holds(obj)
        if index is not None:
            return (kind.name, index)
    return None


@functools.lru_cache(maxsize=None)
def _cuda_probe():
    """(device names, reason) from one probe; the probe runs at most once per process."""
    if importlib.util.find_spec("cupy") is None:
        return (), ("CuPy is not installed (install the extra matching your driver: "
                    "pip install 'xpnet[cuda12]' or 'xpnet[cuda13]')")
    try:
        import cupy
    except Exception as exc:  # a broken install says what broke
        return (), f"CuPy is installed but failed to import ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if "InsufficientDriver" in text:
            return (), (f"the NVIDIA driver is older than the CUDA runtime CuPy {cupy.__version__} "
                        f"was built for (driver/runtime mismatch; {text})")
        if "NoDevice" in text:
            return (), f"CuPy is installed but sees no CUDA device (check CUDA_VISIBLE_DEVICES; {text})"
        return (), f"CuPy is installed but no usable NVIDIA driver was found ({text})"
    if count == 0:
        return (), "CuPy is installed but sees no CUDA device"
    names = []
    for i in range(count):
        name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    return tuple(names), None


def cuda_device_names() -> tuple:
    """Names of the CUDA devices CuPy can use, in index order (empty when none)."""
    return _cuda_probe()[0]


def cuda_unavailable_reason(index: int | None = None) -> str | None:
    """Why CUDA (or CUDA device ``index``) cannot be used; None when it can."""
    names, reason = _cuda_probe()
    if reason is not None:
        return reason
    if index is not None and not 0 <= index < len(names):
        seen = ", ".join(f"cuda:{i}: {n}" for i, n in enumerate(names))
        plural = "device" if len(names) == 1 else "devices"
        return f"CuPy sees {len(names)} {plural} ({seen}); there is no cuda:{index}"
    return None
