import os
import subprocess
import sys
import threading

import numpy
import pytest

import xpnet as xn
from xpnet.device import CPU


def test_device_parses_kind_and_index():
    d = xn.Device("sim:1")
    assert (d.kind, d.index, d.name) == ("sim", 1, "sim:1")
    assert xn.Device("cpu").name == "cpu" and xn.Device("cpu").index == 0
    assert xn.Device("sim") == xn.Device("sim:0")


def test_devices_are_equal_and_hashable_by_kind_and_index():
    assert xn.Device(" SIM:0 ") == xn.Device("sim")
    assert xn.Device("sim:0") != xn.Device("sim:1")
    assert len({xn.Device("sim"), xn.Device("sim:0"), xn.Device("cpu"), CPU}) == 2
    assert xn.Device(xn.Device("sim:2")) == xn.Device("sim:2")


@pytest.mark.parametrize("spec", ["bogus", "gpu", "cuda:x", "sim:-1", "cpu:1"])
def test_unknown_device_is_a_device_error_listing_valid_values(spec):
    with pytest.raises(xn.DeviceError, match="Valid") as info:
        xn.Device(spec)
    assert repr(spec) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_device_rejects_non_strings():
    with pytest.raises(TypeError, match="takes a string"):
        xn.Device(3)


@pytest.mark.skipif(xn.cuda_unavailable_reason() is None, reason="a GPU is usable here")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_gpu_says_why_and_never_falls_back(spec):
    with pytest.raises(xn.DeviceError) as info:
        xn.Device(spec)
    message = str(info.value)
    assert xn.cuda_unavailable_reason() in message
    assert "Valid here: cpu, sim, auto" in message


def test_cuda_index_beyond_count_is_refused():
    reason = xn.cuda_unavailable_reason(99)
    assert reason is not None
    with pytest.raises(xn.DeviceError, match="cuda:99|CUDA device 99"):
        xn.Device("cuda:99")


def test_auto_resolves_to_a_concrete_device():
    auto = xn.Device("auto")
    expected = CPU if xn.cuda_unavailable_reason() else xn.Device("cuda:0")
    assert auto == expected and auto.kind in ("cpu", "cuda")


def test_use_device_nests_and_restores(device):
    outer = xn.current_device()
    with xn.use_device("sim:1"):
        assert xn.current_device() == xn.Device("sim:1")
        with xn.use_device("cpu"):
            assert xn.current_device() == CPU
            assert xn.xp is numpy
        assert xn.current_device() == xn.Device("sim:1")
    assert xn.current_device() == outer


def test_use_device_is_thread_local():
    seen = {}
    ready, release = threading.Event(), threading.Event()

    def other():
        seen["other"] = xn.current_device()
        ready.set()
        release.wait(5)

    with xn.use_device("sim:3"):
        thread = threading.Thread(target=other)
        thread.start()
        ready.wait(5)
        assert xn.current_device() == xn.Device("sim:3")
        release.set()
        thread.join()
    assert seen["other"] != xn.Device("sim:3")


def test_xp_follows_the_current_device(device):
    a = xn.xp.zeros(3)
    assert xn.device_of(a) == device
    assert xn.xp is device.xp


def test_env_variable_selects_the_device(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "sim:2")
    assert xn.current_device() == xn.Device("sim:2")
    monkeypatch.setenv("XPNET_DEVICE", "")
    assert xn.current_device() == xn.Device("auto")


def test_bogus_env_variable_fails_naming_the_variable(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "bogus")
    with pytest.raises(xn.DeviceError, match="XPNET_DEVICE='bogus' is not a device. Valid:"):
        xn.current_device()


def test_available_devices_lists_cpu_sim_and_each_usable_gpu():
    devices = xn.available_devices()
    assert devices[:2] == [CPU, xn.Device("sim")]
    assert all(d.kind == "cuda" for d in devices[2:])
    assert (len(devices) > 2) == (xn.cuda_unavailable_reason() is None)


def test_synchronize_returns(device):
    assert device.synchronize() is None


def test_import_does_not_load_cupy_and_is_quick():
    code = ("import sys, time; t = time.perf_counter(); import xpnet; "
            "print('cupy' in sys.modules, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "XPNET_DEVICE": "cpu"}).stdout.split()
    assert out[0] == "False"
    assert float(out[1]) < 5.0  # generous: a cold import on a loaded CI box; about 0.1 s here


def test_bogus_env_fails_from_the_command_line():
    result = subprocess.run([sys.executable, "-c", "import xpnet; xpnet.current_device()"],
                            capture_output=True, text=True, env={**os.environ, "XPNET_DEVICE": "bogus"})
    assert result.returncode != 0
    assert "xpnet.errors.DeviceError: XPNET_DEVICE='bogus' is not a device. Valid:" in result.stderr
