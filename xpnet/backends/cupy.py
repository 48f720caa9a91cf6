"""The CUDA backend. This module imports CuPy; nothing imports this module until a CUDA
device is first used, so ``import xpnet`` never loads CuPy or touches the driver."""
from __future__ import annotations

import cupy

from .base import TRANSFERS, Backend


class CupyBackend(Backend):
    kind = "cuda"
    xp = cupy

    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index
        self._device = cupy.cuda.Device(index)

    def describe(self):
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(self.index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        with self._device:
            free, total = rt.memGetInfo()
        pool = cupy.get_default_memory_pool()

        def version(v):
            return f"{v // 1000}.{v % 1000 // 10}"
        return {
            "GPU": f"{name} (compute capability {props['major']}.{props['minor']})",
            "memory": f"{total / 2**30:.1f} GiB total, {free / 2**30:.1f} GiB free",
            "memory pool": f"{pool.used_bytes() / 2**20:.1f} MiB used, {pool.total_bytes() / 2**20:.1f} MiB held",
            "driver / runtime": f"CUDA {version(rt.driverGetVersion())} / {version(rt.runtimeGetVersion())}",
            "array module": f"CuPy {cupy.__version__}",
        }

    def activate(self):
        return self._device  # cupy.cuda.Device is a context manager

    def from_host(self, array):
        TRANSFERS.record("h2d", array.nbytes)
        with self._device:
            return cupy.asarray(array)

    def to_host(self, array):
        TRANSFERS.record("d2h", array.nbytes)
        return array.get()

    def from_peer(self, array):
        TRANSFERS.record("d2d", array.nbytes)
        with self._device:
            return array.copy()  # CuPy copies onto the current device, from any device

    def synchronize(self):
        self._device.synchronize()

    def rng(self, seed):
        with self._device:
            return cupy.random.default_rng(seed)
