"""Device kinds live in one place (xpnet.backends.KINDS): names, parsing and messages follow it."""
import numpy
import pytest

import xpnet as xn
from xpnet import backends
from xpnet.device import VALID


def test_every_kind_is_named_in_the_valid_list_and_parses():
    for name, kind in backends.KINDS.items():
        assert name in VALID
        if kind.unavailable(0) is None:
            assert xn.Device(name).kind == name
            assert xn.Device(f"{name}:0").kind == name


def test_a_kind_knows_its_own_arrays_and_no_other():
    host = numpy.zeros(2)
    sim = xn.to_device(host, "sim:1")
    assert backends.array_device(host) == ("cpu", 0)
    assert backends.array_device(sim) == ("sim", 1)
    assert backends.array_device([1, 2]) is None
    assert backends.KINDS["cpu"].holds(sim) is None and backends.KINDS["sim"].holds(host) is None


def test_a_kind_of_one_device_refuses_an_index():
    with pytest.raises(xn.DeviceError, match=r"asks for CPU 1, but the host is one device"):
        xn.Device("cpu:1")
