import collections

import numpy
import pytest

import xpnet as xn

Pair = collections.namedtuple("Pair", "x t")


def test_to_device_keeps_tree_structure_and_non_array_leaves(device, rng):
    tree = {"a": rng.standard_normal(3), "b": [numpy.arange(4), ("label", 7)], "c": Pair(numpy.ones(2), None)}
    moved = xn.to_device(tree, device)
    assert isinstance(moved["b"], list) and isinstance(moved["b"][1], tuple)
    assert isinstance(moved["c"], Pair) and moved["c"].t is None
    assert moved["b"][1] == ("label", 7)
    assert xn.device_of(moved["a"]) == device and xn.device_of(moved["c"].x) == device
    back = xn.to_host(moved)
    assert type(back["a"]) is numpy.ndarray
    numpy.testing.assert_array_equal(back["a"], tree["a"])
    numpy.testing.assert_array_equal(back["b"][0], tree["b"][0])


def test_to_device_defaults_to_the_current_device(device):
    assert xn.device_of(xn.to_device(numpy.zeros(2))) == device


def test_array_already_on_the_device_is_not_copied(device):
    a = xn.to_device(numpy.zeros(3), device)
    before = xn.transfer_stats()
    assert xn.to_device(a, device) is a
    assert (xn.transfer_stats() - before).count == 0


def test_sim_transfers_are_counted_with_bytes():
    before = xn.transfer_stats()
    a = xn.to_device(numpy.zeros((4, 8), dtype=numpy.float32), "sim")
    xn.to_host(a)
    b = xn.to_device(a, "sim:1")
    delta = xn.transfer_stats() - before
    assert (delta.h2d_count, delta.h2d_bytes) == (1, 128)
    assert (delta.d2h_count, delta.d2h_bytes) == (1, 128)
    assert (delta.d2d_count, delta.d2d_bytes) == (1, 128)
    assert xn.device_of(b) == xn.Device("sim:1")


def test_device_copy_is_independent_of_the_host_array():
    host = numpy.zeros(3)
    dev = xn.to_device(host, "sim")
    host[0] = 5
    assert float(dev[0]) == 0.0


def test_cpu_transfers_copy_nothing():
    host = numpy.ones(3)
    before = xn.transfer_stats()
    assert xn.to_device(host, "cpu") is host
    copy = xn.to_host(host)  # a snapshot of its own, as on every device, but not a transfer
    assert copy is not host and numpy.array_equal(copy, host)
    assert (xn.transfer_stats() - before).count == 0


def test_to_device_moves_a_model(device):
    with xn.use_device("cpu"):
        model = xn.nn.Sequential(xn.nn.Affine(3, 2))
    assert xn.to_device(model, device) is model
    assert model.device == device and xn.device_of(model.params()["0.W"]) == device


def test_asarray_converts_lists_numbers_and_dtypes(device):
    a = xn.asarray([[1, 2], [3, 4]], dtype="float32", device=device)
    assert a.dtype == numpy.float32 and xn.device_of(a) == device
    assert xn.to_host(a).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    b = xn.asarray(2.5)
    assert float(xn.to_host(b)) == 2.5


def test_device_of_numpy_and_scalars_is_cpu():
    assert xn.device_of(numpy.zeros(1)) == xn.Device("cpu")
    assert xn.device_of(numpy.float32(1)) == xn.Device("cpu")
    with pytest.raises(TypeError, match="expects an array"):
        xn.device_of([1, 2])


def test_get_array_module_picks_the_arrays_module(device):
    a = xn.xp.ones(2)
    assert xn.get_array_module(a, 3.0, numpy.float32(1), None) is device.xp
    assert xn.get_array_module(1.0) is numpy


def test_get_array_module_refuses_mixed_devices_naming_both():
    a = xn.to_device(numpy.ones(2), "sim:0")
    with pytest.raises(xn.ImplicitTransferError, match="cpu and sim:0|sim:0 and cpu") as info:
        xn.get_array_module(numpy.ones(2), a)
    assert "xn.to_device" in str(info.value)
    assert isinstance(info.value, TypeError)
    with pytest.raises(xn.ImplicitTransferError, match="sim:0 and sim:1"):
        xn.get_array_module(a, xn.to_device(numpy.ones(2), "sim:1"))


def test_reset_transfer_stats():
    xn.to_device(numpy.ones(2), "sim")
    xn.reset_transfer_stats()
    assert xn.transfer_stats() == xn.TransferStats()


class _Params(dict):
    """A dict of one's own whose constructor takes other arguments (a prober's case)."""

    def __init__(self, name="params", **weights):
        super().__init__(**weights)
        self.name = name


class _Batches(list):
    def __init__(self, tag, items=()):
        super().__init__(items)
        self.tag = tag


class _Named(dict):
    """A dict subclass built as a dict is: rebuilt with its type."""


def test_a_subclass_that_cannot_be_rebuilt_from_its_values_is_refused_by_name(device):
    """A prober's finding (session 5): to_device, to_host and grad rebuilt a subclass with
    type(tree)(items), which such a constructor takes differently: an empty dict, silently."""
    params = _Params("mlp", W=numpy.ones((2, 2), numpy.float32))
    for call in (lambda: xn.to_device(params, device), lambda: xn.to_host(params),
                 lambda: xn.grad(lambda p: p["W"].sum())(params),
                 lambda: xn.to_device(_Batches("x", [numpy.ones(3)]), device)):
        with pytest.raises(TypeError, match=r"_(Params|Batches) \(a (dict|list) subclass\) cannot be rebuilt"):
            call()
    moved = xn.to_device(_Named(W=numpy.ones(2, numpy.float32)), device)
    assert type(moved) is _Named and sorted(moved) == ["W"]
