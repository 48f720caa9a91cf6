"""The cpu backend's pooling, activation, bias and softmax cross-entropy kernels (issue 26):
each equals its portable NumPy routine bit for bit (``NumpyBackend`` against
``PortableNumpyBackend``, which sim runs) on random values, on every float bit pattern,
on adversarial ones (NaN, +-inf, -0.0, denormals, exact ties inside a window) and on
empty batches, for float32 and float64. Under ``XPNET_JIT=0`` the kernels are off and
these cases skip with that reason (the training test still compares cpu with sim).
"""
import numpy
import pytest

import xpnet as xn
from tests.backends.test_jit import DTYPES, _same_bits, _values, needs_kernels
from xpnet.backends.numpy import NumpyBackend, PortableNumpyBackend

BACKENDS = (NumpyBackend(), PortableNumpyBackend())
KINDS = ["normal", "bits", "special", "ties"]


def _array(rng, shape, dtype, kind):
    """Values of ``kind``; 'ties' are a few small integers and +-0.0, so windows hold
    equal maxima (the first takes the gradient) and the sign of zero matters."""
    n = int(numpy.prod(shape))
    if kind == "ties":
        values = numpy.array([0.0, -0.0, 1.0, 2.0, -1.0], dtype=dtype)
        return rng.choice(values, size=n).astype(dtype).reshape(shape)
    return _values(rng, n, dtype, kind).reshape(shape)


# (size, stride, pad): the geometries with kernels (2x2 stride 2 tiling, padded or leaving
# a row and column over; 3x3 stride 2 overlapping, padded or not, rectangular pads), then
# ones the routine runs (rectangular, overlapping stride 1, gaps, one-pixel windows).
GEOMETRIES = [((2, 2), (2, 2), (0, 0)), ((2, 2), (2, 2), (1, 1)), ((2, 2), (2, 2), (1, 0)),
              ((3, 3), (2, 2), (1, 1)), ((3, 3), (2, 2), (0, 0)), ((3, 3), (2, 2), (0, 1)),
              ((3, 2), (3, 2), (0, 0)), ((2, 2), (1, 1), (0, 0)), ((2, 2), (3, 3), (0, 0)),
              ((1, 1), (1, 1), (0, 0))]
SHAPES = [(2, 3, 7, 9), (1, 2, 6, 6), (0, 2, 6, 6), (3, 2, 11, 8), (2, 2, 28, 28), (1, 1, 3, 3)]


def _pool_both(name, x, geometry, dout_kind, rng):
    """[forward, forward into out=, backward] from each backend."""
    size, stride, pad = geometry
    results = []
    with numpy.errstate(all="ignore"):
        y = getattr(PortableNumpyBackend(), f"{name}_pool")(x, size, stride, pad)
        dout = _array(rng, y.shape, x.dtype, dout_kind)
        for backend in BACKENDS:
            fwd = getattr(backend, f"{name}_pool")(x, size, stride, pad)
            out = numpy.full(y.shape, 7, dtype=x.dtype)
            into = getattr(backend, f"{name}_pool")(x, size, stride, pad, out=out)
            assert into is out
            if name == "max":
                dx = backend.max_pool_backward(dout, x, y, size, stride, pad)
            else:
                dx = backend.avg_pool_backward(dout, x.shape, size, stride, pad)
            assert dx.shape == x.shape
            results.append([fwd, into, dx])
    return results


@needs_kernels
@pytest.mark.parametrize("name", ["max", "avg"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_pooling_kernels_equal_their_routines(name, geometry, dtype, kind):
    rng = numpy.random.default_rng(abs(hash((name, geometry, kind))) % 2 ** 32)
    for shape in SHAPES:
        x = _array(rng, shape, dtype, kind)
        for dout_kind in ("normal", kind):
            fused, portable = _pool_both(name, x, geometry, dout_kind, rng)
            for a, b in zip(fused, portable):
                _same_bits(a, b)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_gradient_goes_to_the_first_maximum_and_a_nan_window_routes_nowhere(dtype):
    x = numpy.array([[[[1, 3, 3, 0], [3, 2, numpy.nan, 1]]]], dtype=dtype)
    dout = numpy.array([[[[10, 20]]]], dtype=dtype)
    for backend in BACKENDS:
        y = backend.max_pool(x, (2, 2), (2, 2), (0, 0))
        assert y[0, 0, 0, 0] == 3 and numpy.isnan(y[0, 0, 0, 1])
        dx = backend.max_pool_backward(dout, x, y, (2, 2), (2, 2), (0, 0))
        _same_bits(dx, numpy.array([[[[0, 10, 0, 0], [0, 0, 0, 0]]]], dtype=dtype))


@needs_kernels
def test_pooling_leaves_what_its_kernels_do_not_take_to_numpy():
    """A strided view, float16 and a dout of another dtype run the routine: same results."""
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((2, 3, 8, 8)).astype(numpy.float32)
    cases = [(x[:, :, ::2, ::2], numpy.float32), (x.astype(numpy.float16), numpy.float16), (x, numpy.float64)]
    for xi, dout_dtype in cases:
        outs = []
        for backend in BACKENDS:
            y = backend.max_pool(xi, (2, 2), (2, 2), (0, 0))
            dout = numpy.ones(y.shape, dtype=dout_dtype)
            outs.append([y, backend.max_pool_backward(dout, xi, y, (2, 2), (2, 2), (0, 0)),
                         backend.avg_pool_backward(dout, xi.shape, (2, 2), (2, 2), (0, 0))])
        for a, b in zip(*outs):
            _same_bits(a, b)


@needs_kernels
def test_the_pooling_kernels_run_where_they_take_the_arrays(monkeypatch):
    """Each pooling kernel (max and average, forward and backward, 2x2 stride 2 and 3x3
    stride 2) is called for the geometries it is compiled for, so a silent fall back to the
    routines, which every bit-equality case above would pass, fails here; other geometries
    run the routines."""
    from xpnet.backends import _kernels
    called, find = set(), _kernels.pool_kernel

    def recording(name, *geometry):
        kernel = find(name, *geometry)
        return None if kernel is None else (lambda *a: (called.add((name, geometry)), kernel(*a))[1])
    monkeypatch.setattr(_kernels, "pool_kernel", recording)
    backend = NumpyBackend()
    x = numpy.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(numpy.float32)
    for size, stride, pad in (((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (3, 2), (0, 0))):
        y = backend.max_pool(x, size, stride, pad)
        backend.max_pool_backward(numpy.ones_like(y), x, y, size, stride, pad)
        backend.avg_pool_backward(numpy.ones_like(backend.avg_pool(x, size, stride, pad)), x.shape, size, stride,
                                  pad)
    names = ("max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward")
    assert called == {(name, geometry) for name in names for geometry in ((2, 2, 2, 2), (3, 3, 2, 2))}


def _cnn_run(device, steps=6):
    with xn.use_device(device):
        xn.seed(3)
        model = xn.nn.Sequential(
            xn.nn.Conv2D(1, 4, 3, pad=1), xn.nn.ReLU(), xn.nn.MaxPool2D(2),
            xn.nn.Conv2D(4, 6, 3, pad=1), xn.nn.ReLU(), xn.nn.MaxPool2D(3, stride=2, pad=1),
            xn.nn.AvgPool2D(2, stride=1), xn.nn.Affine(6 * 2 * 2, 12), xn.nn.ReLU(), xn.nn.Affine(12, 5))
        opt = xn.optim.Momentum(model, lr=0.05)
        loss_fn = xn.nn.SoftmaxCrossEntropy(label_smoothing=0.1)
        rng = numpy.random.default_rng(1)
        for _ in range(steps):
            x = xn.to_device(rng.standard_normal((16, 1, 12, 12)).astype(numpy.float32))
            t = xn.to_device(rng.integers(0, 5, size=16))
            loss_fn(model(x), t)
            model.backward(loss_fn.backward())
            opt.step()
        return xn.to_host(model.params())


def test_cpu_with_pooling_activation_and_loss_kernels_trains_bit_identically_to_sim():
    """A CNN with MaxPool2D (tiling and overlapping), AvgPool2D, ReLU, Affine and a
    smoothed SoftmaxCrossEntropy: cpu (kernels, when on) and sim (the routines) keep the
    same bits."""
    cpu, sim = _cnn_run("cpu"), _cnn_run("sim")
    assert cpu.keys() == sim.keys()
    for name in cpu:
        _same_bits(cpu[name], sim[name])


ACTIVATION_SHAPES = [(0, 5), (1,), (7,), (3, 333), (4099,), (2, 3, 5, 7)]


def _activations(backend, x, dout, out_kind):
    """Every activation kernel's method on ``backend``: relu (allocated, into out=, in
    place), relu_backward (allocated, into out= with a mask buffer) and the backward chains."""
    in_place = x.copy()
    results = [backend.relu(x), backend.relu(x, out=numpy.full_like(x, 7)), backend.relu(in_place, out=in_place)]
    mask = numpy.empty(x.shape, dtype=bool)
    results += [backend.relu_backward(dout, results[0]), backend.relu_backward(dout, x),
                backend.relu_backward(dout, x, out=numpy.full_like(x, 7), mask=mask)]
    results += [backend.sigmoid_backward(dout, x), backend.tanh_backward(dout, x)]
    results += [backend.leaky_relu_backward(dout, x, slope) for slope in (0.01, 0.3, 1.0, 0)]
    return results


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "bits", "special"])
def test_activation_kernels_equal_their_routines(dtype, kind):
    rng = numpy.random.default_rng(abs(hash(kind)) % 2 ** 32)
    for shape in ACTIVATION_SHAPES:
        x, dout = _array(rng, shape, dtype, kind), _array(rng, shape, dtype, kind)
        with numpy.errstate(all="ignore"):
            fused, portable = (_activations(backend, x, dout, kind) for backend in BACKENDS)
        for a, b in zip(fused, portable):
            assert type(a) is type(b)
            _same_bits(a, b)


@needs_kernels
def test_activations_leave_what_their_kernels_do_not_take_to_numpy():
    """0-d arrays (NumPy's operators give scalars), mixed dtypes, broadcasting and strided
    views run the routine: same results and types either way."""
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((6, 8)).astype(numpy.float32)
    cases = [(x[:1, :1].reshape(()), x[1:2, 1:2].reshape(())), (x, x.astype(numpy.float64)), (x, x[:1]),
             (x[:, ::2], x[:, 1::2])]
    for a, b in cases:
        fused, portable = (_activations(backend, a, b, "normal") if a.shape == b.shape
                           else [backend.sigmoid_backward(b, a), backend.tanh_backward(b, a)] for backend in BACKENDS)
        for u, v in zip(fused, portable):
            assert type(u) is type(v)
            _same_bits(u, v)
