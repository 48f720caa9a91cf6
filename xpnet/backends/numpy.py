"""The CPU backend: NumPy arrays are host arrays, so transfers are no-ops (and not counted).

``PortableNumpyBackend`` runs every routine as written in routines/ (sim runs those, on
the data behind its arrays); ``NumpyBackend``, the cpu device's, runs the element-wise
chains that NumPy cannot fuse, and the copies it makes slowly (the convolution's, the
pooling's), as serial numba kernels (backends/_kernels/) where ``jit.kernels()`` has them,
each equal to its routine bit for bit, and falls back to the routine for anything a kernel
does not take (other dtypes, strided views, 0-d rates of another dtype).
"""
from __future__ import annotations

import numpy

from . import blas, jit
from .base import Backend
from .numpy_conv import ConvKernels
from .numpy_elementwise import ElementwiseKernels
from .routines.norm import _maps, _rows
from .routines.random import _keep_threshold


class PortableNumpyBackend(Backend):
    kind = "cpu"
    xp = numpy

    def gather_rows(self, x, idx, out=None):
        # With out= and the default mode='raise', NumPy gathers into a temporary and
        # copies it over, about three times slower for a batch of MNIST rows. Indices come from a
        # permutation, so clipping never changes one.
        return numpy.take(x, idx, axis=0, out=out, mode="clip")

    def describe(self):
        return {"array module": f"NumPy {numpy.__version__}", "BLAS": blas_summary()}

    def from_host(self, array):
        return array

    def to_host(self, array):
        return array

    def from_peer(self, array):
        return array

    def upload(self, host, out):
        numpy.copyto(out, host)
        return out


class NumpyBackend(ConvKernels, ElementwiseKernels, PortableNumpyBackend):
    """The cpu device's backend: the portable routines, and numba kernels for the
    element-wise chains where they are on (see jit.py)."""

    def describe(self):
        return {**super().describe(), "kernels": jit.status()[1]}

    # -- optimizer updates (routines/updates.py) -------------------------------------------
    def sgd_update(self, p, g, lr, scratch):
        k, lr = jit.kernels_for((p, g), lr)
        if k is None:
            return super().sgd_update(p, g, lr, scratch)
        k.sgd(jit.flat(p), jit.flat(g), lr)

    def momentum_update(self, p, g, v, lr, momentum, scratch):
        k, lr = jit.kernels_for((p, g, v), lr)
        if k is None:
            return super().momentum_update(p, g, v, lr, momentum, scratch)
        k.momentum(jit.flat(p), jit.flat(g), jit.flat(v), lr, p.dtype.type(momentum))

    def adagrad_update(self, p, g, h, lr, eps, scratch):
        k, lr = jit.kernels_for((p, g, h), lr)
        if k is None:
            return super().adagrad_update(p, g, h, lr, eps, scratch)
        k.adagrad(jit.flat(p), jit.flat(g), jit.flat(h), lr, p.dtype.type(eps))

    def rmsprop_update(self, p, g, h, lr, decay, eps, scratch):
        k, lr = jit.kernels_for((p, g, h), lr)
        if k is None:
            return super().rmsprop_update(p, g, h, lr, decay, eps, scratch)
        f = p.dtype.type
        k.rmsprop(jit.flat(p), jit.flat(g), jit.flat(h), lr, f(decay), f(1 - decay), f(eps))

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2, eps, scratch):
        k, lr_t = jit.kernels_for((p, g, m, v), lr_t)
        if k is None:
            return super().adam_update(p, g, m, v, lr_t, beta1, beta2, eps, scratch)
        f = p.dtype.type
        k.adam(jit.flat(p), jit.flat(g), jit.flat(m), jit.flat(v), lr_t, f(1 - beta1), f(1 - beta2), f(eps))

    def decay_gradient(self, p, g, wd, out):
        k, _ = jit.kernels_for((p, g, out), 0.0)
        if k is None:
            return super().decay_gradient(p, g, wd, out)
        k.decay_gradient(jit.flat(p), jit.flat(g), p.dtype.type(wd), jit.flat(out))
        return out

    # -- Dropout's mask (routines/random.py) -------------------------------------------------
    def _dropout_mask(self, key, offset, shape, p, dtype, out):
        k = jit.kernels()
        dtype = numpy.dtype(dtype)
        if (k is None or dtype not in jit.FLOATS or type(offset) is not numpy.ndarray or offset.shape != ()
                or offset.dtype != numpy.uint64 or (out is not None and not jit.fits(out, tuple(shape), dtype))):
            return super()._dropout_mask(key, offset, shape, p, dtype, out)
        if out is None:
            out = numpy.empty(shape, dtype=dtype)
        round_keys = self._philox_constants(key)[1].reshape(10, 2)  # the portable key schedule's, a view
        k.dropout_mask(jit.flat(out), offset, round_keys, numpy.uint64(_keep_threshold(p)),
                       dtype.type(1.0 / (1.0 - p)))
        return out

    # -- BatchNorm (routines/norm.py), training mode -----------------------------------------
    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps, training):
        """The kernels take (N, D), and (N, C, H, W) as (N, C, H*W): xn keeps x's shape
        (the portable routine's is (N*H*W, C) for a 4-D batch), so backward follows the
        forward's way."""
        k = _batchnorm_kernels(x, (gamma, beta, running_mean, running_var)) if training else None
        if k is None or type(momentum) not in (float, int) or type(eps) not in (float, int):
            return super().batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training)
        d, f = x.shape[1], x.dtype.type
        xn = numpy.empty_like(x)
        mu, var, std = (numpy.empty(d, dtype=x.dtype) for _ in range(3))
        if x.ndim == 2:
            y = numpy.empty_like(x)
            k.batchnorm_forward(x, gamma, beta, running_mean, running_var, f(momentum), f(1 - momentum), f(eps),
                                y, xn, mu, var, std)
            return y, xn, std
        y = _channels_last(x.shape, x.dtype)
        k.batchnorm_maps_forward(_channels(x), gamma, beta, running_mean, running_var, f(momentum),
                                 f(1 - momentum), f(eps), y, _channels(xn), mu, var, std)
        return _maps(y, x.shape), xn, std

    def batchnorm_backward(self, dout, gamma, xn, std, dgamma, dbeta, training=True):
        if xn.shape != dout.shape:  # the portable forward's rows
            return super().batchnorm_backward(dout, gamma, xn, std, dgamma, dbeta, training)
        k = _batchnorm_kernels(dout, (gamma, std, dgamma, dbeta)) if training else None
        if k is None or not jit.fits(xn, xn.shape, dout.dtype):
            if xn.ndim == 4:  # the kernel's forward: its xn is (N, C, H, W), not the routine's rows
                xn = _rows(xn)
            return super().batchnorm_backward(dout, gamma, xn, std, dgamma, dbeta, training)
        count = dout.dtype.type(dout.size // dout.shape[1])
        if dout.ndim == 2:
            dx = numpy.empty_like(dout)
            k.batchnorm_backward(dout, gamma, xn, std, dgamma, dbeta, count, dx)
            return dx
        dx = _channels_last(dout.shape, dout.dtype)
        k.batchnorm_maps_backward(_channels(dout), gamma, _channels(xn), std, dgamma, dbeta, count, dx)
        return _maps(dx, dout.shape)


def _channels(x):
    """(N, C, H, W) as (N, C, H*W): a view of a C-contiguous array."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channels_last(shape, dtype):
    """A new (N, H*W, C) array: where a 4-D BatchNorm's kernels write y and dx, laid out as
    the portable routine's results are (``_maps`` of its rows), so that a reduction over
    them afterwards adds in the same order on cpu as on sim."""
    n, c, h, w = shape
    return numpy.empty((n, h * w, c), dtype=dtype)


def _batchnorm_kernels(x, columns):
    """The kernels for a training BatchNorm on ``x`` ((N, D) or (N, C, H, W)) with
    per-feature ``columns`` (D,) or (C,), or None.

    Only where the routine's rows (x itself, or ``_rows(x)``) are a C-contiguous (M, C)
    array with M >= 2 and C >= 2, which NumPy sums row by row as the kernels do: x
    C-contiguous, and for a 4-D batch either two images or more (``_rows`` copies) or one
    pixel an image (it is a C-contiguous view). One image of several pixels gives an
    F-ordered view, and one column a single contiguous run: NumPy adds those pairwise."""
    k = jit.kernels()
    if k is None or type(x) is not numpy.ndarray or x.ndim not in (2, 4) or x.dtype not in jit.FLOATS:
        return None
    pixels = x.shape[2] * x.shape[3] if x.ndim == 4 else 1
    if not x.flags.c_contiguous or x.shape[1] < 2 or x.shape[0] * pixels < 2:
        return None
    if x.shape[0] < 2 and pixels > 1:
        return None
    d = x.shape[1:2]
    return k if all(jit.fits(c, d, x.dtype) for c in columns) else None


def blas_summary() -> str:
    """The BLAS NumPy runs on and its threads (via threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            chunks = "; a chunked convolution's products on 1 (backends/blas.py)" if blas.settable() else ""
            return (f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture') or '?'} kernel), "
                    f"{p.get('num_threads')} threads{chunks}")
    except ImportError:
        pass
    try:
        built = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{built.get('name')} {built.get('version')} (threads: install threadpoolctl to see)"
    except Exception:  # show_config's layout is not a stable API
        return "unknown"
