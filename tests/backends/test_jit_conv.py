"""The convolution's numba kernels (backends/_kernels/conv.py, issue 26) equal the steps of
routines/conv.py bit for bit: each step on random and adversarial values (NaN, +-inf,
-0.0, denormals, exact ties in the pooling windows), the whole routines over several
geometries, and Conv2D and the fused Conv2D-ReLU-MaxPool2D stage trained on cpu (kernels)
and on sim (the portable routines) to the same bits.
"""
import numpy
import pytest

import xpnet as xn
from xpnet.backends import _kernels, blas
from xpnet.backends.numpy import NumpyBackend, PortableNumpyBackend
from xpnet.backends.routines.conv import ConvRoutines
from xpnet.backends.routines.dense import DenseRoutines

from .test_jit import DTYPES, _same_bits, _values, needs_kernels

KINDS = ["normal", "bits", "special"]
# (N, C, H, W, F, kh, kw, stride, pad): channels 1/3/16, odd sizes, pad 0/1/2, stride 1/2, batch 1 and 0
GEOMETRIES = [
    (2, 1, 7, 9, 3, 3, 3, (1, 1), (1, 1)),
    (1, 3, 8, 8, 4, 3, 3, (2, 2), (1, 1)),
    (3, 16, 6, 5, 5, 3, 3, (1, 1), (0, 0)),
    (2, 3, 9, 7, 2, 5, 5, (1, 1), (2, 2)),
    (2, 3, 11, 10, 4, 3, 2, (2, 1), (2, 0)),
    (2, 2, 9, 9, 3, 3, 3, (2, 2), (2, 2)),
    (1, 16, 5, 5, 8, 1, 1, (1, 1), (0, 0)),
    (0, 3, 5, 5, 2, 3, 3, (1, 1), (1, 1)),
]
# conv geometry and the pooling window (its output must tile the convolution's)
POOLED = [
    ((2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1)), (2, 2)),
    ((1, 16, 6, 6, 5, 3, 3, (1, 1), (1, 1)), (3, 2)),
    ((2, 1, 9, 9, 3, 3, 3, (2, 2), (1, 1)), (5, 1)),
    ((3, 3, 7, 7, 2, 3, 3, (1, 1), (0, 0)), (1, 1)),
    ((1, 2, 4, 4, 3, 1, 1, (1, 1), (0, 0)), (4, 4)),
    ((2, 2, 8, 9, 3, 3, 3, (1, 1), (1, 1)), (2, 3)),  # padded width 11: three phases, the last one short
]
BACKENDS = (NumpyBackend(), PortableNumpyBackend())


def _array(rng, shape, dtype, kind):
    return _values(rng, int(numpy.prod(shape)), dtype, kind).reshape(shape)


def _both(call):
    """call(backend) on the kernels' backend and on the portable one, every warning off
    (adversarial values overflow, as they should)."""
    with numpy.errstate(all="ignore"):
        return [call(b) for b in BACKENDS]


def _same(pairs):
    for a, b in zip(*pairs):
        if a.dtype.kind == "f":
            _same_bits(a, b)
        else:  # pooling's first maximum, a small integer
            assert a.dtype == b.dtype and numpy.array_equal(a, b)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_and_col2im_kernels_equal_their_routines(geometry, kind, dtype):
    n, c, h, w, f, kh, kw, stride, pad = geometry
    rng = numpy.random.default_rng(n * 100 + c)
    x = _array(rng, (n, c, h, w), dtype, kind)
    _same(_both(lambda b: [b.im2col(x, kh, kw, stride, pad)]))
    oh, ow = BACKENDS[0]._conv_geometry(x.shape, kh, kw, stride, pad)
    col = _array(rng, (c * kh * kw, n * oh * ow), dtype, kind)
    _same(_both(lambda b: [b.col2im(col, x.shape, kh, kw, stride, pad)]))
    if stride == (1, 1):
        wide = (c * kh * kw, n * oh * (w + 2 * pad[1]))
        _same(_both(lambda b: [b._im2col_wide(x, kh, kw, pad, numpy.full(wide, 7, dtype))]))


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("geometry,size", POOLED)
def test_grouped_im2col_kernel_equals_the_routine(geometry, size, kind, dtype):
    """The conv+pool stage's layout: the columns place by place in the pooling window."""
    n, c, h, w, f, kh, kw, stride, pad = geometry
    x = _array(numpy.random.default_rng(c), (n, c, h, w), dtype, kind)
    _same(_both(lambda b: [b.im2col(x, kh, kw, stride, pad, group=size)]))


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("width_extra", [0, 2])
def test_transposing_copies_around_the_product_equal_their_routines(width_extra, kind, dtype):
    """conv2d's tail (bias add, or none) and conv2d_backward's dout in the product's layout."""
    rng = numpy.random.default_rng(width_extra)
    f, n, oh, ow = 5, 3, 4, 7
    prod = _array(rng, (f, n, oh, ow + width_extra), dtype, kind)
    bias = _array(rng, (f,), dtype, kind)
    for b in (bias, None):
        _same(_both(lambda be: [be._conv_output(prod, b, numpy.full((n, f, oh, ow), 7, dtype))]))
    dy = _array(rng, (n, f, oh, ow), dtype, kind)
    def layout(backend):
        d4 = numpy.full(prod.shape, 7, dtype)
        backend._product_layout(dy, d4)
        return [d4]
    _same(_both(layout))


def _pool_inputs(rng, dtype, kind, places):
    """The products of each place: in 'ties' mode few distinct values (0, -0.0, 1, NaN),
    so windows tie at their maximum and at zero."""
    shape = (places, 3, 2, 5, 4)
    if kind == "ties":
        return rng.choice(numpy.array([0.0, -0.0, 1.0, -1.0, 1.0, numpy.nan], dtype=dtype), size=shape)
    return _array(rng, shape, dtype, kind)


def _pool_forward_steps(backend, products, b, relu):
    places, f, n, qh, qw = products.shape
    pooled = products[0].copy()
    first = numpy.zeros(pooled.shape, numpy.uint8)
    temps = (numpy.empty(pooled.shape, bool), numpy.empty(pooled.shape, numpy.uint8))
    for k in range(1, places):
        backend._running_max(products[k].copy(), pooled, first, k, temps)
    out = backend._pooled_output(pooled, b, relu, numpy.full((n, f, qh, qw), 7, products.dtype))
    return [pooled, first, out]


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS + ["ties"])
@pytest.mark.parametrize("places", [1, 4, 9])
@pytest.mark.parametrize("relu", [True, False])
def test_pooling_steps_equal_their_routines(places, kind, dtype, relu):
    """The running maximum (which place is first, NaN and -0.0 as NumPy's maximum) and the
    output (transposed, bias, ReLU's maximum(., 0))."""
    rng = numpy.random.default_rng(places)
    products = _pool_inputs(rng, dtype, kind, places)
    b = _array(rng, (products.shape[1],), dtype, "special" if kind == "ties" else kind)
    _same(_both(lambda be: _pool_forward_steps(be, products, b, relu)))


def _pool_backward_steps(backend, dout, y, first, size):
    n, f, qh, qw = dout.shape
    d = numpy.full((f, n * qh * qw), 7, dout.dtype)
    backend._relu_grad_product(dout, y, d.reshape(f, n, qh, qw), lambda name, shape, dtype: numpy.empty(shape, dtype))
    dy = numpy.full((n, f, qh * size[0], qw * size[1]), 7, dout.dtype)
    dks = []
    for k in range(size[0] * size[1]):
        temps = (numpy.empty(d.shape, bool), numpy.full(d.shape, 7, dout.dtype))
        backend._place_grad(d, first, k, size, temps, dy if k % 2 == 0 else None)
        dks.append(temps[1])
    return [d, dy, *dks]


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS + ["ties"])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 2)])
@pytest.mark.parametrize("relu", [True, False])
def test_pooling_backward_steps_equal_their_routines(size, kind, dtype, relu):
    """ReLU's mask times dout (-x * 0 is -0.0, inf * 0 NaN), and each place's share of the
    gradient, with and without the scatter into dy."""
    rng = numpy.random.default_rng(size[0] * 10 + size[1])
    shape = (3, 4, 2, 5)
    dout = _array(rng, shape, dtype, "special" if kind == "ties" else kind)
    y = _pool_inputs(rng, dtype, kind, 1)[0].reshape(-1)[:dout.size].reshape(shape) if kind == "ties" else \
        _array(rng, shape, dtype, kind)
    first = rng.integers(0, size[0] * size[1], size=(4, 3 * 2 * 5)).astype(numpy.uint8)
    _same(_both(lambda be: _pool_backward_steps(be, dout, y if relu else None, first, size)))


def _conv_pass(backend, x, W, b, dout, stride, pad, need_dx):
    y, col = backend.conv2d(x, W, b, stride, pad)
    dW, db = numpy.full_like(W, 7), numpy.full_like(b, 7)
    dx = backend.conv2d_backward(dout, col, W, x.shape, stride, pad, dW, db, need_dx=need_dx)
    return [y, col, dW, db] + ([dx] if need_dx else [])


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "special"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv2d_forward_and_backward_equal_the_portable_routines(geometry, kind, dtype):
    n, c, h, w, f, kh, kw, stride, pad = geometry
    rng = numpy.random.default_rng(h * 10 + w)
    x, W, b = (_array(rng, s, dtype, kind) for s in ((n, c, h, w), (f, c, kh, kw), (f,)))
    oh, ow = BACKENDS[0]._conv_geometry(x.shape, kh, kw, stride, pad)
    dout = _array(rng, (n, f, oh, ow), dtype, kind)
    for need_dx in (True, False):
        _same(_both(lambda be: _conv_pass(be, x, W, b, dout, stride, pad, need_dx)))


def _conv_pool_pass(backend, x, W, b, stride, pad, size, relu, dout):
    y, saved = backend.conv2d_maxpool(x, W, b, stride, pad, size, relu)
    dW, db = numpy.full_like(W, 7), numpy.full_like(b, 7)
    dx = backend.conv2d_maxpool_backward(dout, y, saved, x.shape, W, stride, pad, size, relu, dW, db)
    return [y, *saved, dW, db, dx]


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "special", "ties"])
@pytest.mark.parametrize("geometry,size", POOLED)
@pytest.mark.parametrize("relu", [True, False])
def test_conv2d_maxpool_forward_and_backward_equal_the_portable_routines(geometry, size, kind, dtype, relu):
    """'ties': inputs and weights of 0, +-1 only, so the pooling windows tie exactly."""
    n, c, h, w, f, kh, kw, stride, pad = geometry
    rng = numpy.random.default_rng(c * 7 + h)
    if kind == "ties":
        pick = numpy.array([0.0, -0.0, 1.0, -1.0, 0.0, 1.0], dtype=dtype)
        x, W, b = (rng.choice(pick, size=s) for s in ((n, c, h, w), (f, c, kh, kw), (f,)))
    else:
        x, W, b = (_array(rng, s, dtype, kind) for s in ((n, c, h, w), (f, c, kh, kw), (f,)))
    oh, ow = BACKENDS[0]._conv_geometry(x.shape, kh, kw, stride, pad)
    dout = _array(rng, (n, f, oh // size[0], ow // size[1]), dtype, "normal" if kind == "ties" else kind)
    _same(_both(lambda be: _conv_pool_pass(be, x, W, b, stride, pad, size, relu, dout)))


@needs_kernels
def test_the_conv_kernels_run_where_they_take_the_arrays(monkeypatch):
    """Every kernel of the family is called by a Conv2D and a conv+pool stage's step (the
    overrides did not fall back to the routines), and a float16 batch or Fortran-ordered columns,
    which the kernels do not take, run the routines, with the same results."""
    called = set()
    names = ["col2im", "conv_output", "product_layout", "grouped_columns", "running_max", "pooled_output",
             "relu_grad_product", "place_grad"]
    for name in names:
        kernel = getattr(_kernels, name)
        monkeypatch.setattr(_kernels, name, lambda *a, _k=kernel, _n=name: (called.add(_n), _k(*a))[1])
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(numpy.float32)
    W, b = rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32), numpy.zeros(4, numpy.float32)
    _conv_pass(BACKENDS[0], x, W, b, numpy.ones((2, 4, 8, 8), numpy.float32), (1, 1), (1, 1), True)
    _conv_pass(BACKENDS[0], x, W, b, numpy.ones((2, 4, 4, 4), numpy.float32), (2, 2), (1, 1), True)
    _conv_pool_pass(BACKENDS[0], x, W, b, (1, 1), (1, 1), (2, 2), True, numpy.ones((2, 4, 4, 4), numpy.float32))
    assert called == set(names)
    called.clear()
    x16, W16, b16 = x.astype(numpy.float16), W.astype(numpy.float16), b.astype(numpy.float16)
    _same(_both(lambda be: _conv_pass(be, x16, W16, b16, numpy.ones((2, 4, 8, 8), numpy.float16), (1, 1), (1, 1),
                                      True)))
    _same(_both(lambda be: _conv_pool_pass(be, x16, W16, b16, (1, 1), (1, 1), (2, 2), True,
                                           numpy.ones((2, 4, 4, 4), numpy.float16))))
    assert not called
    col = numpy.asfortranarray(rng.standard_normal((27, 2 * 4 * 4)).astype(numpy.float32))
    _same(_both(lambda be: [be.col2im(col, x.shape, 3, 3, (2, 2), (1, 1))]))
    assert not called


def _trained(device, seed, layers, make_opt, classes, data_seed, steps):
    """The parameters, on the host, after ``steps`` steps of Sequential(``layers()``) built on
    ``device`` after xn.seed(``seed``), on random (6, 1, 8, 8) batches of ``classes`` classes."""
    with xn.use_device(device):
        xn.seed(seed)
        model = xn.nn.Sequential(*layers())
        opt = make_opt(model)
        loss_fn = xn.nn.SoftmaxCrossEntropy()
        rng = numpy.random.default_rng(data_seed)
        for _ in range(steps):
            x = xn.to_device(rng.standard_normal((6, 1, 8, 8)).astype(numpy.float32))
            loss_fn(model(x), xn.to_device(rng.integers(0, classes, size=6)))
            model.backward(loss_fn.backward())
            opt.step()
        return xn.to_host(model.params())


def _train(device, pool, steps=4):
    """A few Momentum steps of Conv2D (stride 1 and 2) and, with ``pool``, a fused
    Conv2D-ReLU-MaxPool2D stage; the parameters after them, on the host."""
    def layers():
        first = [xn.nn.Conv2D(1, 4, 3, pad=1), xn.nn.ReLU(), xn.nn.MaxPool2D(2)] if pool else \
            [xn.nn.Conv2D(1, 4, 3, pad=1), xn.nn.ReLU()]
        return [*first, xn.nn.Conv2D(4, 6, 3, stride=2, pad=1), xn.nn.ReLU(), xn.nn.Flatten(),
                xn.nn.Affine(6 * (4 if pool else 16), 5)]
    return _trained(device, 3, layers, lambda m: xn.optim.Momentum(m, lr=0.05), 5, 1, steps)


@pytest.mark.parametrize("pool", [False, True])
def test_cpu_with_conv_kernels_trains_bit_identically_to_sim(pool):
    cpu, sim = _train("cpu", pool), _train("sim", pool)
    assert cpu.keys() == sim.keys()
    for name in cpu:
        _same_bits(cpu[name], sim[name])


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_backward_takes_an_empty_batch(device, stride):
    """conv2d_backward found the columns' width by dividing by N*OH: an empty batch raised
    ZeroDivisionError. Now: dW and db are zero, dx is empty."""
    with xn.use_device(device):
        xn.seed(0)
        conv = xn.nn.Conv2D(2, 3, 3, stride=stride, pad=1)
        y = conv(xn.to_device(numpy.zeros((0, 2, 6, 6), numpy.float32)))
        dx = xn.to_host(conv.backward(y))
        assert dx.shape == (0, 2, 6, 6)
        for g in xn.to_host(conv.grads()).values():
            assert not numpy.any(g)


def _train_stride1(device, pool, steps=3):
    """Two stride-1 convolutions (the second with its input gradient), and with ``pool``
    the second fused with ReLU and MaxPool2D; the parameters after a few SGD steps."""
    def layers():
        tail = [xn.nn.MaxPool2D(2), xn.nn.Flatten(), xn.nn.Affine(4 * 16, 3)] if pool else \
            [xn.nn.Flatten(), xn.nn.Affine(4 * 64, 3)]
        return [xn.nn.Conv2D(1, 3, 3, pad=1), xn.nn.ReLU(), xn.nn.Conv2D(3, 4, 3, pad=1), xn.nn.ReLU(), *tail]
    return _trained(device, 4, layers, lambda m: xn.optim.SGD(m, lr=0.05), 3, 2, steps)


@pytest.mark.parametrize("chunk_bytes", [1, 46080])
@pytest.mark.parametrize("pool", [False, True])
def test_chunked_convolutions_train_bit_identically_on_cpu_and_sim(monkeypatch, chunk_bytes, pool):
    """The second layer's input gradient is a convolution of dy (6, 4, 8, 8), 11520 bytes of
    columns an image: in chunks of one image, or of four and a tail of two; cpu and sim
    still agree."""
    chunked = []
    run = ConvRoutines._conv2d_chunks
    monkeypatch.setattr(ConvRoutines, "input_grad_scatter_ratio", None)  # as a convolution, whatever the sizes
    monkeypatch.setattr(ConvRoutines, "conv_chunk_bytes", chunk_bytes)
    monkeypatch.setattr(ConvRoutines, "_conv2d_chunks", lambda self, *a: (chunked.append(a[5]), run(self, *a))[1])
    cpu, sim = _train_stride1("cpu", pool), _train_stride1("sim", pool)
    assert set(chunked) == ({1} if chunk_bytes == 1 else {4})
    for name in cpu:
        _same_bits(cpu[name], sim[name])


@pytest.mark.parametrize("dtype", DTYPES)
def test_only_the_input_gradients_convolution_goes_in_chunks(monkeypatch, dtype):
    """A forward convolution keeps the whole batch's columns and runs whole whatever
    ``conv_chunk_bytes`` says (backward reads its columns); the input gradient's goes in
    chunks, the same convolution as unchunked."""
    rng = numpy.random.default_rng(9)
    x, W, b = rng.standard_normal((5, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    x, W, b = x.astype(dtype), W.astype(dtype), b.astype(dtype)
    backend, chunked = PortableNumpyBackend(), []
    run = ConvRoutines._conv2d_chunks
    monkeypatch.setattr(ConvRoutines, "_conv2d_chunks", lambda self, *a: (chunked.append(a[5]), run(self, *a))[1])
    monkeypatch.setattr(ConvRoutines, "input_grad_scatter_ratio", None)
    monkeypatch.setattr(ConvRoutines, "conv_chunk_bytes", None)
    y, col = backend.conv2d(x, W, b, (1, 1), (1, 1))
    dx = backend._input_grad(y, W, x.shape, (1, 1), (1, 1))
    monkeypatch.setattr(ConvRoutines, "conv_chunk_bytes", 3 * 36 * 7 * 8 * x.itemsize)  # 3 images a chunk
    y2, col2 = backend.conv2d(x, W, b, (1, 1), (1, 1))
    assert chunked == []
    _same_bits(y, y2)
    _same_bits(col, col2)
    dx2 = backend._input_grad(y, W, x.shape, (1, 1), (1, 1))
    assert chunked == [3]
    numpy.testing.assert_allclose(dx2, dx, rtol=1e-5 if dtype == numpy.float32 else 1e-12)


def test_a_chunked_convolutions_products_run_on_one_blas_thread(monkeypatch):
    """backends/blas.py: each chunk's product on one BLAS thread (on cpu and sim alike, so
    both round them alike), and the BLAS's thread count as it was afterwards."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed (the jit extra brings it)")
    controller = blas._controller()
    if controller is None:
        pytest.skip("threadpoolctl finds no BLAS whose threads it can set")
    threads = lambda: [lib.num_threads for lib in controller.lib_controllers]  # noqa: E731
    before, seen = threads(), []
    run = DenseRoutines.matmul
    monkeypatch.setattr(DenseRoutines, "matmul", lambda self, a, b, out=None: (seen.append(threads()),
                                                                             run(self, a, b, out=out))[1])
    monkeypatch.setattr(ConvRoutines, "conv_chunk_bytes", 3 * 36 * 7 * 8 * 4)  # 3 images a chunk
    monkeypatch.setattr(ConvRoutines, "input_grad_scatter_ratio", None)
    rng = numpy.random.default_rng(3)
    dy, W = (rng.standard_normal(shape).astype(numpy.float32) for shape in ((5, 4, 7, 6), (4, 3, 3, 3)))
    PortableNumpyBackend()._input_grad(dy, W, (5, 3, 7, 6), (1, 1), (1, 1))
    assert len(seen) == 2 and all(t == [1] * len(before) for t in seen)  # two chunks, 3 images and 2
    assert threads() == before

