import inspect
import os
import subprocess
import sys

import numpy
import pytest

import xpnet as xn
from xpnet.backends import Backend
from xpnet.backends.numpy import NumpyBackend
from xpnet.backends.sim import SimBackend


def _public(cls):
    """The public methods ``cls`` defines itself (``Backend``: with those of its routine families)."""
    names = dir(cls) if cls is Backend else vars(cls)
    return {n: getattr(cls, n) for n in names if not n.startswith("_") and callable(getattr(cls, n))}


def _backend_classes():
    classes = [NumpyBackend, SimBackend]
    if "cupy" in sys.modules or xn.cuda_unavailable_reason() is None:
        from xpnet.backends.cupy import CupyBackend
        classes.append(CupyBackend)
    return classes


@pytest.mark.parametrize("cls", _backend_classes(), ids=lambda c: c.__name__)
def test_backends_define_no_public_method_the_base_lacks(cls):
    base = _public(Backend)
    for name, method in _public(cls).items():
        assert name in base, f"{cls.__name__}.{name} is not part of Backend"
        assert list(inspect.signature(method).parameters) == list(inspect.signature(base[name]).parameters), name


def test_cupy_backend_module_is_consistent_without_importing_cupy():
    """Checks xpnet/backends/cupy.py's methods by its source, where CuPy cannot be imported."""
    import ast
    from pathlib import Path
    tree = ast.parse((Path(xn.__file__).parent / "backends" / "cupy.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CupyBackend")
    base = _public(Backend)
    for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")):
        assert fn.name in base, fn.name
        assert [a.arg for a in fn.args.args] == list(inspect.signature(base[fn.name]).parameters)


def test_cuda_reason_is_none_or_says_what_is_missing():
    reason = xn.cuda_unavailable_reason()
    assert reason is None or any(w in reason for w in ("CuPy", "driver", "device"))


def test_cpu_backend_describes_its_blas():
    assert "BLAS" in xn.Device("cpu").backend.describe()


def test_no_generic_module_imports_cupy():
    """Backend-specific code lives only under xpnet/backends/."""
    from pathlib import Path
    root = Path(xn.__file__).parent
    for path in root.rglob("*.py"):
        if "backends" in path.parts:
            continue
        assert "import cupy" not in path.read_text(), path


def test_info_command_runs():
    out = subprocess.run([sys.executable, "-m", "xpnet", "info"], capture_output=True, text=True,
                         check=True, env={**os.environ, "XPNET_DEVICE": "cpu"}).stdout
    assert "NumPy" in out and "devices: cpu, sim:0" in out and "BLAS" in out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_takes_every_operand_layout(device, rng, dtype):
    # The CUDA backend calls cuBLAS itself for 2-D products: C- and F-ordered operands
    # (x.T in backward), with and without out=, must all agree with NumPy.
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((5, 3)).astype(dtype)
    backend = device.backend
    tol = 1e-5 if dtype == "float32" else 1e-12
    for left in (a, numpy.asfortranarray(a)):
        for right in (b, numpy.asfortranarray(b)):
            dl, dr = xn.to_device((left, right), device)
            got = backend.matmul(dl, dr)
            numpy.testing.assert_allclose(xn.to_host(got), a @ b, rtol=tol, atol=tol)
            out = device.xp.full((7, 3), numpy.nan, dtype=dtype)
            assert backend.matmul(dl, dr, out=out) is out
            numpy.testing.assert_allclose(xn.to_host(out), a @ b, rtol=tol, atol=tol)
    da, db = xn.to_device((a, b), device)
    numpy.testing.assert_allclose(xn.to_host(backend.matmul(da.T.T, db[:, :2])), a @ b[:, :2], rtol=tol, atol=tol)
    numpy.testing.assert_allclose(xn.to_host(backend.matmul(db.T, da.T)), b.T @ a.T, rtol=tol, atol=tol)


def test_a_replay_reruns_the_recorded_work_on_new_inputs(device):
    xp = device.xp
    x = xp.ones(4, dtype=xp.float32)
    y = xp.empty(4, dtype=xp.float32)

    def fn():
        xp.multiply(x, 3, out=y)
        return y
    first, replay = device.backend.capture(fn)
    assert first is y and float(xn.to_host(y.sum())) == 12
    if device.kind == "cpu":
        assert replay is None  # the CPU has nothing to record: it runs fn each time
        return
    x[...] = 2
    assert replay() is y
    numpy.testing.assert_array_equal(xn.to_host(y), [6, 6, 6, 6])


def _fused_cases(rng):
    """(routine, arguments on the host, index of the returned one or None, indices of the
    arguments it writes or reads: the rest are work space) for each routine the CUDA
    backend runs as one kernel (cupy.py's _kernels)."""
    p, g, m = (rng.standard_normal(1001).astype(numpy.float32) for _ in range(3))
    v = numpy.abs(rng.standard_normal(1001)).astype(numpy.float32)
    f32 = numpy.float32
    offset = numpy.array(2**32 - 3, dtype=numpy.uint64)  # counters cross into the high word
    yield ("dropout_mask", ((2**31 + 5, 77), offset, (7, 3, 11), 0.3, f32, numpy.empty((7, 3, 11), f32)), 5, (1, 5))
    yield ("adam_rate", (numpy.array(0.01, f32), numpy.array(7, numpy.int64), 0.9, 0.999, numpy.empty((), f32),
                         (numpy.empty(()), numpy.empty(()))), 4, (0, 1, 4))
    yield ("adam_update", (p, g, m, v, numpy.array(1e-3, f32), 0.9, 0.999, 1e-7, numpy.empty_like(p)), None,
           (0, 1, 2, 3, 4))


@pytest.mark.parametrize("case", range(3), ids=["dropout_mask", "adam_rate", "adam_update"])
def test_fused_routines_compute_what_the_portable_ones_do(device, rng, case):
    """The arrays each routine writes or reads are compared after the call (results,
    moments, the advanced counter), bit for bit: the kernels do the same float32
    operations in the same order, without fused multiply-adds (0 ulps apart on the H100,
    bench/results/h100-2026-11-24/fused-ulps.txt). Only Adam's rate may differ there by
    CUDA's float64 pow, last bit, before it is rounded to float32."""
    name, args, result, compared = list(_fused_cases(rng))[case]
    expected = [a.copy() if isinstance(a, numpy.ndarray) else a for a in args]
    getattr(NumpyBackend(), name)(*expected)
    on_device = xn.to_device(list(args), device)
    with device.backend.activate():
        out = getattr(device.backend, name)(*on_device)
    if result is not None:
        assert out is on_device[result]
    exact = device.kind != "cuda" or name != "adam_rate"
    for i in compared:
        got, want = xn.to_host(on_device[i]), expected[i]
        if exact:
            numpy.testing.assert_array_equal(got, want)
        else:
            numpy.testing.assert_allclose(got, want, rtol=4 * numpy.finfo(numpy.float32).eps)


def test_sim_counts_each_fused_routine_as_one_kernel():
    """What the CUDA backend launches: Dropout's forward is its mask, the counter's advance
    and the product (about 60 kernels when the mask was element-wise operations)."""
    with xn.use_device("sim") as dev:
        layer = xn.nn.Dropout(0.5, seed=3)
        x = xn.to_device(numpy.ones((32, 64), numpy.float32), dev)
        layer(x)
        before = xn.launch_stats()[str(dev)]
        layer(x)
        assert (xn.launch_stats()[str(dev)] - before).launches == 3


def test_matmul_precision_is_checked_and_remembered():
    with pytest.raises(ValueError, match=r"'fp16' is not a precision; expected one of 'highest', 'tf32'"):
        xn.set_matmul_precision("fp16")
    assert xn.get_matmul_precision() == "highest"


def test_tf32_products_on_cuda_and_float32_elsewhere(device, rng):
    """TF32 keeps 10 mantissa bits of each input: on cuda a 512-deep product drifts from the
    float64 one by about 1e-3 relative, against float32's 1e-6; the CPU and sim have no TF32."""
    a, b = (rng.standard_normal((64, 512)).astype(numpy.float32), rng.standard_normal((512, 64)).astype(numpy.float32))
    exact = a.astype(numpy.float64) @ b.astype(numpy.float64)
    da, db = xn.to_device((a, b), device)

    def error():
        with device.backend.activate():
            got = xn.to_host(device.backend.matmul(da, db))
        return float(numpy.abs(got - exact).max() / numpy.abs(exact).max())
    highest = error()
    try:
        xn.set_matmul_precision("tf32")
        tf32 = error()
    finally:
        xn.set_matmul_precision("highest")
    assert highest < 1e-5 and error() == highest  # and set back, it is float32 again
    if device.kind == "cuda":
        assert 1e-5 < tf32 < 1e-2
    else:
        assert tf32 == highest
