"""The sim device must catch every implicit host/device crossing that CuPy would refuse."""
import numpy
import pytest

import xpnet as xn

SIM = xn.Device("sim")


@pytest.fixture
def s():
    return xn.to_device(numpy.arange(6.0).reshape(2, 3), SIM)


@pytest.mark.parametrize("op", [
    lambda s, h: s + h, lambda s, h: h + s, lambda s, h: s * h, lambda s, h: h - s,
    lambda s, h: s @ h.T, lambda s, h: h.T @ s, lambda s, h: s > h,
    lambda s, h: numpy.maximum(s, h), lambda s, h: numpy.dot(h, s.T),
    lambda s, h: numpy.concatenate([s, h]), lambda s, h: numpy.where(s > 0, s, h),
    lambda s, h: SIM.xp.add(s, h), lambda s, h: SIM.xp.dot(s, h.T),
], ids=["add", "radd", "mul", "rsub", "matmul", "rmatmul", "compare", "ufunc", "np.dot",
        "concatenate", "where", "xp.add", "xp.dot"])
def test_sim_refuses_numpy_operand(s, op):
    with pytest.raises(xn.ImplicitTransferError, match="sim:0") as info:
        op(s, numpy.ones((2, 3)))
    assert "xn.to_device" in str(info.value)


def test_sim_refuses_in_place_update_from_host(s):
    with pytest.raises(xn.ImplicitTransferError):
        s += numpy.ones((2, 3))
    with pytest.raises(xn.ImplicitTransferError):
        numpy.add(numpy.ones((2, 3)), 1, out=s)


def test_sim_refuses_host_values_and_host_indices(s):
    with pytest.raises(xn.ImplicitTransferError):
        s[0] = numpy.ones(3)
    with pytest.raises(xn.ImplicitTransferError):
        s[numpy.array([0, 1])]


def test_numpy_asarray_of_sim_array_raises(s):
    """ImplicitTransferError, a TypeError as CuPy's is, for every way NumPy converts: a
    prober found ``host[0] = s`` raising a plain TypeError (session 5)."""
    with pytest.raises(xn.ImplicitTransferError, match="xn.to_host"):
        numpy.asarray(s)
    with pytest.raises(xn.ImplicitTransferError):
        numpy.array(s)
    host = numpy.zeros((2,) + s.shape, dtype=s.dtype)
    with pytest.raises(xn.ImplicitTransferError, match="xn.to_host"):
        host[0] = s


def test_sim_devices_do_not_mix(s):
    other = xn.to_device(numpy.ones((2, 3)), "sim:1")
    with pytest.raises(xn.ImplicitTransferError, match="sim:0 and sim:1"):
        s + other


def test_scalars_mix_freely(s):
    r = 2 * s + numpy.float32(1) - 0.5
    assert type(r) is xn.backends.SimArray
    numpy.testing.assert_array_equal(xn.to_host(r), numpy.arange(6.0).reshape(2, 3) * 2 + 0.5)


def test_reductions_and_indexing_give_zero_d_sim_arrays(s):
    assert type(s.sum()) is xn.backends.SimArray and s.sum().ndim == 0
    assert type(s[1, 2]) is xn.backends.SimArray
    assert type(numpy.sum(s)) is xn.backends.SimArray


def test_creation_functions_make_sim_arrays():
    xp = SIM.xp
    for a in (xp.zeros(3), xp.ones((2, 2)), xp.arange(4), xp.empty(2), xp.eye(2),
              xp.random.default_rng(0).random(3)):
        assert xn.device_of(a) == SIM


def test_implicit_scalar_reads_are_counted(s):
    before = xn.transfer_stats()
    float(s[0, 1])
    s.get()
    assert (xn.transfer_stats() - before).d2h_count == 2


def test_xp_asarray_of_host_data_is_a_counted_copy():
    before = xn.transfer_stats()
    a = SIM.xp.asarray(numpy.ones(4, dtype=numpy.float32))
    assert xn.device_of(a) == SIM
    delta = xn.transfer_stats() - before
    assert (delta.h2d_count, delta.h2d_bytes) == (1, 16)


def test_sim_results_are_bit_identical_to_cpu(rng):
    a, b = rng.standard_normal((64, 33)).astype(numpy.float32), rng.standard_normal((33, 17)).astype(numpy.float32)

    def work(xp, a, b):
        y = xp.tanh(a @ b)
        return xp.exp(y - y.max(axis=1, keepdims=True)).sum(axis=0) / 3
    cpu = work(numpy, a, b)
    sim = work(SIM.xp, xn.to_device(a, SIM), xn.to_device(b, SIM))
    assert numpy.array_equal(cpu, xn.to_host(sim))


def test_out_argument_returns_the_same_sim_array(s):
    out = SIM.xp.empty((2, 3))
    assert SIM.xp.multiply(s, 2, out=out) is out
    numpy.testing.assert_array_equal(xn.to_host(out), numpy.arange(6.0).reshape(2, 3) * 2)


def test_sim_array_repr_names_its_device(s):
    assert "sim:0" in repr(s)


def test_sim_array_cannot_be_pickled(s):
    import pickle
    with pytest.raises(TypeError, match="to_host"):
        pickle.dumps(s)
