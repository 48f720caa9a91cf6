"""The only package that knows which array libraries exist.

``get_backend(device)`` returns the backend object for a device; ``array_device(obj)``
says which device an array lives on without importing CuPy unless CuPy is already loaded;
``cuda_unavailable_reason()`` says why CUDA cannot be used (None when it can).
"""
from __future__ import annotations

import copyreg
import functools
import importlib.util
import sys
import threading

from .base import TRANSFERS, Backend
from .numpy import NumpyBackend
from .sim import SimArray, SimBackend

__all__ = [
    "Backend", "TRANSFERS", "get_backend", "array_device", "cuda_unavailable_reason",
    "cuda_device_names", "SimArray",
]

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
                if kind == "cpu":
                    backend = NumpyBackend()
                elif kind == "sim":
                    backend = SimBackend(index)
                elif kind == "cuda":
                    from .cupy import CupyBackend
                    backend = CupyBackend(index)
                    copyreg.pickle(CupyBackend, _as_its_device)
                else:  # Device() validates kinds first; this is a programming error
                    raise AssertionError(f"no backend for device kind {kind!r}")
                _backends[key] = backend
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
    import numpy
    if isinstance(obj, (numpy.ndarray, numpy.generic)):
        return ("cpu", 0)
    if isinstance(obj, SimArray):
        return ("sim", obj.device_index)
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(obj, cupy.ndarray):
        return ("cuda", obj.device.id)
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
