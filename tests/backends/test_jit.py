"""The cpu backend's numba kernels (issue 26): each equals its portable NumPy routine bit
for bit, on random values and on every float bit pattern there is (NaN, +-inf, -0.0,
denormals, the largest values, exact ties), for float32 and float64 and empty arrays.

These tests compare the cpu device's ``NumpyBackend`` (kernels) with
``PortableNumpyBackend`` (the routines as written, which sim runs). Under ``XPNET_JIT=0``
(the second pass of ``make test``) the kernels are off and these cases skip with that
reason; the rest of the suite then checks the NumPy versions.
"""
import os
import subprocess
import sys

import numpy
import pytest

import xpnet as xn
from xpnet.backends import jit
from xpnet.backends.numpy import NumpyBackend, PortableNumpyBackend

JIT_OFF = os.environ.get("XPNET_JIT", "").strip().lower() in jit.OFF_VALUES
needs_kernels = pytest.mark.skipif(JIT_OFF, reason="XPNET_JIT=0: the numba kernels are off in this pass")
SIZES = [0, 1, 3, 7, 1000, 4099]
DTYPES = [numpy.float32, numpy.float64]


def _values(rng, n, dtype, kind):
    """n values: 'normal' (N(0, 1)), 'bits' (every bit pattern alike: NaN, inf, denormals,
    huge and tiny values) or 'special' (a mix of 0, -0, +-inf, NaN, denormals, ties)."""
    dtype = numpy.dtype(dtype)
    if kind == "normal":
        return rng.standard_normal(n).astype(dtype)
    if kind == "bits":
        uint = numpy.uint32 if dtype.itemsize == 4 else numpy.uint64
        return rng.integers(0, numpy.iinfo(uint).max, size=n, dtype=uint, endpoint=True).view(dtype)
    info = numpy.finfo(dtype)
    special = numpy.array([0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan, info.smallest_subnormal,
                           -info.smallest_subnormal, info.smallest_normal, info.max, -info.max, 0.5, 1.5,
                           2.5, 1.0, -1.0, info.eps, 1 + info.eps], dtype=dtype)
    return rng.choice(special, size=n).astype(dtype)


def _same_bits(a, b):
    """Bit for bit, -0.0 and denormals included; a NaN is matched by a NaN of any sign and
    payload: those are the compiler's choice (LLVM may swap the operands of x + y, and
    x86 keeps the first operand's NaN when both are NaN), and NumPy's own SIMD paths
    differ in them too."""
    a, b = numpy.asarray(a), numpy.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    uint = {2: numpy.uint16, 4: numpy.uint32, 8: numpy.uint64}[a.dtype.itemsize]
    differ = numpy.flatnonzero((a.view(uint) != b.view(uint)) & ~(numpy.isnan(a) & numpy.isnan(b)))
    assert differ.size == 0, f"{differ.size} of {a.size} differ, first at {differ[:5]}: {a.flat[differ[:5]]} " \
                             f"against {b.flat[differ[:5]]}"


UPDATES = {  # name -> (number of state arrays, extra arguments after the rate)
    "sgd_update": (0, ()),
    "momentum_update": (1, (0.9,)),
    "adagrad_update": (1, (1e-7,)),
    "rmsprop_update": (1, (0.99, 1e-7)),
    "adam_update": (2, (0.9, 0.999, 1e-7)),
}


def _run_update(backend, name, arrays, lr, extra):
    p, g, *state = [a.copy() for a in arrays]
    scratch = numpy.empty_like(p)
    with numpy.errstate(all="ignore"):  # adversarial values overflow, as they should
        getattr(backend, name)(p, g, *state, lr, *extra, scratch)
    return [p, *state]


@needs_kernels
@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "bits", "special"])
def test_every_optimizer_kernel_equals_its_routine_bit_for_bit(name, dtype, kind):
    rng = numpy.random.default_rng(hash((name, kind)) % 2 ** 32)
    nstate, extra = UPDATES[name]
    for n in SIZES:
        arrays = [_values(rng, n, dtype, kind) for _ in range(2 + nstate)]
        if kind == "normal" and nstate:  # state as training leaves it: sums of squares are >= 0
            arrays[-1] = numpy.abs(arrays[-1])
        for lr in (numpy.array(0.01, dtype=dtype), numpy.array(0.37, dtype=dtype), 0.1):
            fused = _run_update(NumpyBackend(), name, arrays, lr, extra)
            portable = _run_update(PortableNumpyBackend(), name, arrays, lr, extra)
            for a, b in zip(fused, portable):
                _same_bits(a, b)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "bits", "special"])
def test_weight_decay_kernel_equals_its_routine(dtype, kind):
    rng = numpy.random.default_rng(7)
    for n in SIZES:
        p, g = _values(rng, n, dtype, kind), _values(rng, n, dtype, kind)
        outs = [numpy.empty_like(p), numpy.empty_like(p)]
        with numpy.errstate(all="ignore"):
            NumpyBackend().decay_gradient(p, g, 0.01, out=outs[0])
            PortableNumpyBackend().decay_gradient(p, g, 0.01, out=outs[1])
        _same_bits(*outs)


@needs_kernels
def test_kernels_take_only_what_they_can_and_leave_the_rest_to_numpy():
    """A rate of another dtype (NumPy computes in float64 then), a strided view or float16
    run the routine itself: same results either way."""
    rng = numpy.random.default_rng(3)
    base = rng.standard_normal(64).astype(numpy.float32)
    cases = [
        (base, numpy.array(0.1, dtype=numpy.float64)),  # float64 rate on float32 arrays
        (base[::2], numpy.array(0.1, dtype=numpy.float32)),  # strided
        (base.astype(numpy.float16), 0.1),  # a dtype the kernels do not compile for
        (base, numpy.float64(0.1)),  # a NumPy float64 scalar is not cast down
    ]
    for p, lr in cases:
        g = numpy.ones_like(p)
        fused = _run_update(NumpyBackend(), "sgd_update", [p, g], lr, ())
        portable = _run_update(PortableNumpyBackend(), "sgd_update", [p, g], lr, ())
        _same_bits(fused[0], portable[0])


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (5,), (4, 3), (100, 256), (3, 5, 7), (2, 1, 28, 29)])
@pytest.mark.parametrize("p", [1e-9, 0.2, 0.5, 0.999])
def test_dropout_mask_kernel_equals_the_philox_routine(dtype, shape, p):
    rng = numpy.random.default_rng(11)
    for offset0 in (0, 12345, 2 ** 32 - 2, 2 ** 64 - 3):  # counters crossing 2^32 and wrapping at 2^64
        key = tuple(int(k) for k in rng.integers(0, 2 ** 32, size=2))
        masks, offsets = [], []
        for backend in (NumpyBackend(), PortableNumpyBackend()):
            offset = numpy.array(offset0, dtype=numpy.uint64)
            out = numpy.full(shape, 7, dtype=dtype)
            mask = backend.dropout_mask(key, offset, shape, p, dtype, out=out)
            assert mask is out
            mask2 = backend.dropout_mask(key, offset, shape, p, dtype)  # allocated, and the next counters
            masks += [mask, mask2]
            offsets.append(int(offset))
        _same_bits(masks[0], masks[2])
        _same_bits(masks[1], masks[3])
        assert offsets[0] == offsets[1]


@needs_kernels
def test_dropout_keeps_about_one_minus_p():
    """The kernel's mask is a mask: 0 or 1/(1-p), kept at the rate asked for."""
    mask = NumpyBackend().dropout_mask((1, 2), numpy.zeros((), numpy.uint64), (1000, 100), 0.2, numpy.float32)
    assert set(numpy.unique(mask)) == {numpy.float32(0), numpy.float32(1 / 0.8)}
    assert abs((mask > 0).mean() - 0.8) < 0.005


def _regularised(device, opt_name, wd):
    with xn.use_device(device):
        xn.seed(5)
        model = xn.nn.Sequential(xn.nn.Affine(20, 16), xn.nn.BatchNorm(16), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                                 xn.nn.Affine(16, 16), xn.nn.BatchNorm(16), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                                 xn.nn.Affine(16, 4))
        opt = getattr(xn.optim, opt_name)(model, lr=0.01, weight_decay=wd)
        loss_fn = xn.nn.SoftmaxCrossEntropy()
        rng = numpy.random.default_rng(0)
        for _ in range(20):
            x = xn.to_device(rng.standard_normal((32, 20)).astype(numpy.float32))
            t = xn.to_device(rng.integers(0, 4, size=32))
            loss_fn(model(x), t)
            model.backward(loss_fn.backward())
            opt.step()
        return xn.to_host(model.params())


def _conv_bn(device):
    with xn.use_device(device):
        xn.seed(6)
        nn = xn.nn
        model = nn.Sequential(nn.Conv2D(1, 4, 3, pad=1), nn.ReLU(), nn.MaxPool2D(2), nn.BatchNorm(4),
                              nn.Conv2D(4, 6, 3, pad=1), nn.BatchNorm(6), nn.ReLU(), nn.Affine(6 * 5 * 5, 3))
        opt = xn.optim.Momentum(model, lr=0.05, nesterov=True)
        loss_fn = xn.nn.SoftmaxCrossEntropy()
        rng = numpy.random.default_rng(1)
        for _ in range(10):
            loss_fn(model(xn.to_device(rng.standard_normal((8, 1, 10, 10)).astype(numpy.float32))),
                    xn.to_device(rng.integers(0, 3, size=8)))
            model.backward(loss_fn.backward())
            opt.step()
        return xn.to_host(model.params()), xn.to_host(model.buffers())


def test_cpu_with_kernels_trains_a_cnn_with_batchnorm_bit_identically_to_sim():
    (cpu_p, cpu_b), (sim_p, sim_b) = _conv_bn("cpu"), _conv_bn("sim")
    for name in cpu_p:
        _same_bits(cpu_p[name], sim_p[name])
    for name in cpu_b:
        _same_bits(cpu_b[name], sim_b[name])


@pytest.mark.parametrize("opt_name", ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam", "AdamW"])
@pytest.mark.parametrize("wd", [0.0, 1e-3])
def test_cpu_with_kernels_trains_bit_identically_to_sim(opt_name, wd):
    """sim runs the portable routines; cpu runs the kernels (when on): 20 steps of a model
    with BatchNorm, Dropout and every optimizer leave the same bits."""
    cpu, sim = _regularised("cpu", opt_name, wd), _regularised("sim", opt_name, wd)
    for name in cpu:
        _same_bits(cpu[name], sim[name])


def test_info_says_whether_the_kernels_run_and_why():
    for setting, expected in (("0", "cpu kernels: off: XPNET_JIT='0'"), ("1", "cpu kernels: on: numba")):
        out = subprocess.run([sys.executable, "-m", "xpnet", "info"], capture_output=True, text=True,
                             check=True, env={**os.environ, "XPNET_JIT": setting, "XPNET_DEVICE": "cpu"}).stdout
        assert expected in out, out


def test_a_wrong_xpnet_jit_value_is_refused_by_name():
    code = "import xpnet.backends.jit as j; j.kernels()"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "XPNET_JIT": "maybe"})
    assert run.returncode != 0 and "XPNET_JIT='maybe' is not a switch" in run.stderr


def test_kernels_are_on_where_numba_is_installed_unless_turned_off():
    on, why = jit.status()
    assert on == (not JIT_OFF), why


@needs_kernels
def test_compiled_kernels_are_cached_under_xpnet_cache_dir(tmp_path):
    """Not beside the source (a read-only install cannot write there): in
    $XPNET_CACHE_DIR/numba, ~/.cache/xpnet/numba by default."""
    code = ("import numpy; from xpnet.backends import jit; a = numpy.ones(3, numpy.float32); "
            "jit.kernels().sgd(a, a.copy(), numpy.array(0.5, numpy.float32)); print(a)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "XPNET_CACHE_DIR": str(tmp_path)})
    assert run.stdout.strip() == "[0.5 0.5 0.5]"
    assert any(f.name.startswith("updates.sgd-") for f in (tmp_path / "numba").rglob("*.nbi"))


def _matrix(rng, shape, dtype, kind):
    return _values(rng, int(numpy.prod(shape)), dtype, kind).reshape(shape)


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "bits", "special"])
@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (8, 3), (9, 16), (100, 256), (257, 7),
                                   (2, 3, 1, 1), (1, 2, 1, 2), (4, 16, 7, 5), (32, 8, 14, 14), (3, 16, 12, 12)])
def test_batchnorm_kernels_equal_their_routines(dtype, kind, shape):
    """(N, D) and (N, C, H, W): the kernels read a 4-D batch in place, the routine normalises
    the rows of its (N*H*W, C) transpose; the same sums in the same order either way."""
    rng = numpy.random.default_rng(shape[0] * 1000 + shape[1])
    d = shape[1]
    x = _matrix(rng, shape, dtype, kind)
    if kind == "normal":  # off-centre, as activations are
        x = x * 3 + 5
    gamma, beta = _values(rng, d, dtype, kind), _values(rng, d, dtype, kind)
    stats = [_values(rng, d, dtype, "normal"), numpy.abs(_values(rng, d, dtype, "normal"))]
    dout = _matrix(rng, shape, dtype, kind)
    results = []
    for backend in (NumpyBackend(), PortableNumpyBackend()):
        running = [s.copy() for s in stats]
        dgamma, dbeta = numpy.full(d, 9, dtype=dtype), numpy.full(d, 9, dtype=dtype)
        with numpy.errstate(all="ignore"):
            y, xn, std = backend.batchnorm_forward(x, gamma, beta, *running, 0.9, 1e-5, True)
            dx = backend.batchnorm_backward(dout, gamma, xn, std, dgamma, dbeta, True)
        if xn.ndim == 4:  # the kernel keeps x's layout; the routine, its rows
            xn = xn.transpose(0, 2, 3, 1).reshape(-1, d)
        results.append([y, xn, std, *running, dx, dgamma, dbeta])
    for a, b in zip(*results):
        _same_bits(a, b)


@needs_kernels
@pytest.mark.parametrize("fallback", ["strided dout", "float16", "eval"])
def test_batchnorm_4d_backward_after_a_kernel_forward_takes_the_routines_way_when_it_must(fallback):
    """A forward by the kernel keeps xn as (N, C, H, W); a backward the kernel cannot take
    (a strided dout) still gets the routine's result, and so does everything the kernel
    never takes (float16, eval mode)."""
    rng = numpy.random.default_rng(4)
    dtype = numpy.float16 if fallback == "float16" else numpy.float32
    x = rng.standard_normal((6, 3, 4, 5)).astype(dtype)
    wide = rng.standard_normal((6, 3, 4, 10)).astype(dtype)
    dout = wide[..., ::2] if fallback == "strided dout" else wide[..., :5].copy()
    results = []
    for backend in (NumpyBackend(), PortableNumpyBackend()):
        gamma, beta = numpy.full(3, 1.5, dtype), numpy.full(3, 0.25, dtype)
        running = [numpy.zeros(3, dtype), numpy.ones(3, dtype)]
        grads = [numpy.zeros(3, dtype), numpy.zeros(3, dtype)]
        training = fallback != "eval"
        y, xn, std = backend.batchnorm_forward(x, gamma, beta, *running, 0.9, 1e-5, training)
        dx = backend.batchnorm_backward(dout, gamma, xn, std, *grads, training)
        assert y.shape == dx.shape == x.shape
        results.append([y, dx, *running, *grads])
    for a, b in zip(*results):
        _same_bits(a, b)


def _layouts(rng, dtype):
    """BatchNorm inputs whose rows NumPy does not sum row by row, or which are views."""
    x4 = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x2 = rng.standard_normal((40, 6)).astype(dtype)
    return {
        "one image of many pixels": rng.standard_normal((1, 3, 5, 5)).astype(dtype),
        "one image, one pixel": rng.standard_normal((1, 3, 1, 1)).astype(dtype),
        "a 2-D transpose": numpy.ascontiguousarray(x2.T).T,
        "(C, N, H, W) memory": numpy.ascontiguousarray(x4.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
        "a strided 4-D view": rng.standard_normal((3, 4, 5, 12)).astype(dtype)[..., ::2],
        "contiguous 4-D": x4,
    }


@needs_kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["one image of many pixels", "one image, one pixel", "a 2-D transpose",
                                    "(C, N, H, W) memory", "a strided 4-D view", "contiguous 4-D"])
@pytest.mark.parametrize("dout_layout", ["same", "transposed"])
def test_batchnorm_kernels_leave_to_numpy_every_layout_it_sums_in_another_order(dtype, layout, dout_layout):
    """NumPy adds a C-contiguous (M, C) array's rows in order, but a row-major view of F-ordered
    memory (one image of several pixels, a transposed batch) pairwise along the run: the
    kernels take only what NumPy sums their way (found by a hostile probe: cpu != sim for a
    fit whose last batch held one image)."""
    rng = numpy.random.default_rng(21)
    x = _layouts(rng, dtype)[layout] * 3 + 5
    dout = rng.standard_normal(x.shape).astype(dtype)
    if dout_layout == "transposed":
        dout = numpy.ascontiguousarray(dout.T).T
    d = x.shape[1]
    results = []
    for backend in (NumpyBackend(), PortableNumpyBackend()):
        gamma, beta = numpy.linspace(0.5, 2, d).astype(dtype), numpy.linspace(-1, 1, d).astype(dtype)
        running = [numpy.zeros(d, dtype), numpy.ones(d, dtype)]
        grads = [numpy.zeros(d, dtype), numpy.zeros(d, dtype)]
        y, xn, std = backend.batchnorm_forward(x, gamma, beta, *running, 0.9, 1e-5, True)
        dx = backend.batchnorm_backward(dout, gamma, xn, std, *grads, True)
        results.append([y, dx, std, *running, *grads])
    for a, b in zip(*results):
        _same_bits(a, b)


@needs_kernels
def test_a_4d_batchnorms_results_lie_in_memory_as_the_routines_do():
    """Equal values in another layout are not enough: a sum over y or dx afterwards (a
    softmax over channels, a mean) adds in memory order, so cpu would drift from sim (found
    in review). The kernels write channels last, as the routine's transposed rows lie."""
    rng = numpy.random.default_rng(8)
    x = rng.standard_normal((4, 64, 5, 5)).astype(numpy.float32) * 3 + 1
    dout = rng.standard_normal(x.shape).astype(numpy.float32)
    results = []
    for backend in (NumpyBackend(), PortableNumpyBackend()):
        gamma, beta = numpy.full(64, 1.5, numpy.float32), numpy.full(64, 0.5, numpy.float32)
        running = [numpy.zeros(64, numpy.float32), numpy.ones(64, numpy.float32)]
        grads = [numpy.zeros(64, numpy.float32), numpy.zeros(64, numpy.float32)]
        y, xn, std = backend.batchnorm_forward(x, gamma, beta, *running, 0.9, 1e-5, True)
        dx = backend.batchnorm_backward(dout, gamma, xn, std, *grads, True)
        results.append((y.strides, dx.strides, numpy.exp(y).sum(axis=1), dx.sum(axis=1)))
    (ys, dxs, ysum, dxsum), (ys2, dxs2, ysum2, dxsum2) = results
    assert ys == ys2 and dxs == dxs2
    _same_bits(ysum, ysum2)
    _same_bits(dxsum, dxsum2)


def test_fit_whose_last_batch_holds_one_image_trains_the_same_on_cpu_and_sim():
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((9, 1, 8, 8)).astype(numpy.float32), rng.integers(0, 3, 9)
    params = []
    for device in ("cpu", "sim"):
        with xn.use_device(device):
            xn.seed(2)
            nn = xn.nn
            model = nn.Sequential(nn.Conv2D(1, 4, 3, pad=1), nn.ReLU(), nn.MaxPool2D(2), nn.BatchNorm(4),
                                  nn.Flatten(), nn.Affine(64, 3))
        xn.fit(model, nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=4, seed=1,
               progress=False, device=device)
        params.append(xn.to_host(model.params()))
    for name in params[0]:
        _same_bits(params[0][name], params[1][name])


@needs_kernels
def test_batchnorm_of_one_feature_is_left_to_numpy():
    """One column: NumPy's sum over the rows is pairwise there; the routine itself runs."""
    x = numpy.random.default_rng(0).standard_normal((1000, 1)).astype(numpy.float32) + 1000
    one = numpy.ones(1, numpy.float32)
    outs = [b.batchnorm_forward(x, one, one * 0, one * 0, one.copy(), 0.9, 1e-5, True)[0]
            for b in (NumpyBackend(), PortableNumpyBackend())]
    _same_bits(*outs)


@pytest.mark.parametrize("opt_name,wd", [("Adam", 0.0), ("Adam", 1e-3), ("SGD", 0.0), ("RMSProp", 1e-3)])
def test_optimizer_flat_buffers_do_not_alias_in_cache(opt_name, wd):
    """p, g, the state, scratch and the decayed gradient start at least 256 bytes apart
    modulo 4 KiB (one by one, same-sized allocations land 48 bytes apart there, and the
    fused update that streams them together ran 2-4x slower), and do not overlap."""
    with xn.use_device("cpu"):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(784, 256), xn.nn.ReLU(), xn.nn.Affine(256, 10))
        opt = getattr(xn.optim, opt_name)(model, lr=0.01, weight_decay=wd)
        opt.step()
    group = opt._groups[0]
    buffers = [group.p, group.g, group.scratch, *group.state.values()] + ([group.decayed] if wd else [])
    starts = [b.__array_interface__["data"][0] for b in buffers]
    for i, a in enumerate(buffers):
        for j, b in enumerate(buffers[:i]):
            assert not numpy.shares_memory(a, b)
            gap = (starts[i] - starts[j]) % 4096
            assert min(gap, 4096 - gap) >= 256, (i, j, starts)
