"""The reasons CUDA cannot be used, each named, with a stand-in for CuPy's module.

These run everywhere: they replace ``cupy`` in sys.modules by a fake whose runtime
fails the way real drivers do, and check that xpnet says which failure it was.
"""
import importlib.machinery
import importlib.util
import sys
import types

import pytest

import xpnet as xn
from xpnet import backends, device


@pytest.fixture
def fake_cupy(monkeypatch):
    def install(count=None, error=None, names=("NVIDIA H100 80GB HBM3",), broken=False):
        module = types.ModuleType("cupy")
        module.__version__ = "14.2.0"
        module.__spec__ = importlib.machinery.ModuleSpec("cupy", None)

        def get_count():
            if error is not None:
                raise RuntimeError(error)
            return len(names) if count is None else count
        module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
            getDeviceCount=get_count, getDeviceProperties=lambda i: {"name": names[i].encode()}))
        monkeypatch.setitem(sys.modules, "cupy", None if broken else module)
        if broken:
            real = importlib.util.find_spec
            monkeypatch.setattr(importlib.util, "find_spec",
                                lambda name, *a: module.__spec__ if name == "cupy" else real(name, *a))
        backends._cuda_probe.cache_clear()
        device._env_cache.clear()
    yield install
    backends._cuda_probe.cache_clear()
    device._env_cache.clear()


@pytest.mark.parametrize("error, expected", [
    ("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version",
     "driver/runtime mismatch"),
    ("cudaErrorNoDevice: no CUDA-capable device is detected", "sees no CUDA device"),
    ("cudaErrorInitializationError: initialization error", "no usable NVIDIA driver"),
])
def test_each_driver_failure_is_named(fake_cupy, error, expected):
    fake_cupy(error=error)
    reason = xn.cuda_unavailable_reason()
    assert expected in reason and error in reason
    with pytest.raises(xn.DeviceError, match=expected):
        xn.Device("cuda")


def test_cupy_that_fails_to_import_is_named(fake_cupy):
    fake_cupy(broken=True)
    assert "CuPy is installed but failed to import" in xn.cuda_unavailable_reason()


def test_zero_devices(fake_cupy):
    fake_cupy(count=0)
    assert xn.cuda_unavailable_reason() == "CuPy is installed but sees no CUDA device"


def test_missing_device_index_lists_the_devices_there_are(fake_cupy):
    fake_cupy()
    assert xn.cuda_unavailable_reason() is None
    assert xn.Device("cuda:0").name == "cuda:0"  # a device that exists can be named
    with pytest.raises(xn.DeviceError) as info:
        xn.Device("cuda:1", _source="XPNET_DEVICE='cuda:1'")
    assert str(info.value) == (
        "XPNET_DEVICE='cuda:1' asks for CUDA device 1, but CuPy sees 1 device "
        "(cuda:0: NVIDIA H100 80GB HBM3); there is no cuda:1. Valid here: cpu, sim, auto, cuda, cuda:0.")


def test_auto_picks_the_first_gpu_when_there_is_one(fake_cupy):
    fake_cupy(names=("GPU A", "GPU B"))
    assert xn.Device("auto") == xn.Device("cuda:0")
    assert device.auto_device_reason() == "auto picks cuda:0 (GPU A)"
    assert [d.name for d in xn.available_devices()] == ["cpu", "sim:0", "cuda:0", "cuda:1"]
