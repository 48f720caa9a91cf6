"""Whether the cpu backend's fused numba kernels run, and the kernels themselves.

``kernels()`` returns the compiled kernels' package (backends/_kernels/), importing
numba on its first call only, or None, and then every routine runs its NumPy version:

- ``XPNET_JIT=0`` turns them off (``XPNET_JIT=1``, or unset, leaves them on);
- without numba (the ``xpnet[jit]`` extra) there is nothing to run them with.

``status()`` says which, and why, for ``xpnet info``. The kernels are compiled when a run
first calls them and cached on disk, so later processes load them (about 0.4 s) instead of
compiling them again (a few seconds): in ``$NUMBA_CACHE_DIR`` when that is set, else in
``~/.cache/xpnet/numba`` (``$XPNET_CACHE_DIR/numba``), which works for a read-only install
too; where neither can be written numba's own places are tried, and at worst a process
compiles what it uses without caching it.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy

from .._cache import cache_root

_lock = threading.Lock()
_state = None  # (kernels module or None, reason it is None)
_off = 0  # depth of off() blocks

OFF_VALUES = ("0", "false", "no", "off")
ON_VALUES = ("", "1", "true", "yes", "on")


def cache_dir() -> str:
    """Where compiled kernels are kept: ``$NUMBA_CACHE_DIR`` if set, else ``~/.cache/xpnet/numba``."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    return os.path.join(cache_root(), "numba")


def kernels():
    """The kernels module, or None when they are off or cannot run (see ``status``)."""
    if _off:
        return None
    state = _state
    if state is None:
        state = _load()
    return state[0]


@contextlib.contextmanager
def off():
    """Every routine runs its NumPy version inside this block (in this process, all
    threads): how bench/compare.py times both side by side."""
    global _off
    _off += 1
    try:
        yield
    finally:
        _off -= 1


def status() -> tuple:
    """(on, why): whether the fused CPU kernels run, and a sentence saying why or why not."""
    module, reason = _state or _load()
    return module is not None, reason


# -- what a kernel takes (the cpu backend asks before it calls one) ---------------------------
FLOATS = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def readable(a, dtype) -> bool:
    """An input a kernel reads: a C-contiguous NumPy array of ``dtype``."""
    return type(a) is numpy.ndarray and a.dtype == dtype and a.flags.c_contiguous


def fits(a, shape, dtype) -> bool:
    """An output a kernel writes: ``readable``, of ``shape``, and writable."""
    return readable(a, dtype) and a.shape == shape and a.flags.writeable


def flat(a):
    return a if a.ndim == 1 else a.reshape(-1)


def kernels_for(arrays, rate):
    """(kernels, rate as a 0-d array of the arrays' dtype) where a kernel takes ``arrays``
    (NumPy arrays of one shape and float dtype, C-contiguous, writable) and ``rate`` (a
    Python number, which NumPy casts to that dtype, or a 0-d array of that dtype); else
    (None, rate) and the caller runs the portable routine."""
    k = kernels()
    if k is None:
        return None, rate
    first = arrays[0]
    dtype, shape = first.dtype, first.shape
    if dtype not in FLOATS or not all(fits(a, shape, dtype) for a in arrays):
        return None, rate
    if type(rate) is numpy.ndarray:
        return (k, rate) if rate.shape == () and rate.dtype == dtype else (None, rate)
    if type(rate) in (float, int):
        return k, numpy.array(rate, dtype=dtype)
    return None, rate


def _load():
    global _state
    with _lock:
        if _state is None:
            _state = _try_load()
        return _state


def _try_load():
    setting = os.environ.get("XPNET_JIT", "").strip().lower()
    if setting in OFF_VALUES:
        return None, f"off: XPNET_JIT={os.environ['XPNET_JIT']!r} (every routine runs its NumPy version)"
    if setting not in ON_VALUES:
        raise ValueError(f"XPNET_JIT={os.environ['XPNET_JIT']!r} is not a switch: set XPNET_JIT=0 to run "
                         f"every CPU routine in NumPy, or 1 (or leave it unset) to use the numba kernels.")
    try:
        import numba
    except ImportError:
        return None, ("off: numba is not installed (pip install 'xpnet[jit]' for the fused CPU kernels; "
                      "every routine runs its NumPy version)")
    except Exception as exc:  # numba refuses a NumPy it was not built for, at import
        return None, (f"off: numba failed to import ({type(exc).__name__}: {exc}); every routine runs "
                      f"its NumPy version")
    _use_our_cache_dir(numba)
    from . import _kernels
    return _kernels, (f"on: numba {numba.__version__}, serial kernels compiled at first use and cached "
                      f"in {cache_dir()} (XPNET_JIT=0 turns them off)")


def _use_our_cache_dir(numba):
    """Cache xpnet's kernels under ``cache_dir()`` unless NUMBA_CACHE_DIR says otherwise.

    numba looks for a cache folder with the locator classes in ``CacheImpl._locator_classes``
    in turn (next to the source first: not writable in a read-only install). A locator put
    first answers for the files of backends/_kernels/ only, and steps aside (returns None) where the
    folder cannot be written, so numba's own choices still apply then."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover (numba moved it: its default places still work)
        return
    base = getattr(caching, "UserProvidedCacheLocator", None) or getattr(caching, "_UserProvidedCacheLocator", None)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if base is None or impl is None or any(getattr(c, "_xpnet", False) for c in impl._locator_classes):
        return
    kernels_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kernels")

    class XpnetCacheLocator(base):
        _xpnet = True

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.environ.get("NUMBA_CACHE_DIR") or os.path.dirname(os.path.abspath(py_file)) != kernels_dir:
                return None
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None
            return self

    impl._locator_classes = [XpnetCacheLocator, *impl._locator_classes]
