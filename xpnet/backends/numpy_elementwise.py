"""The cpu backend's overrides for pooling and activations: each calls its numba kernel
(backends/_kernels/) where ``jit.kernels()`` has one and the kernel takes the arrays
(float32 or float64, one dtype, C-contiguous, the shapes it was written for), and
otherwise the portable routine (``super()``), so results are the same bit for bit either
way and cpu stays bit-identical to sim.

A mixin: ``NumpyBackend`` inherits it before ``PortableNumpyBackend``.
"""
from __future__ import annotations

import numpy

from . import jit


def _kernels_on(arrays, ndim=None):
    """The kernels where every one of ``arrays`` is a C-contiguous NumPy array of the first
    one's float dtype (and ``ndim`` axes when given), else None."""
    k = jit.kernels()
    if k is None:
        return None
    dtype = getattr(arrays[0], "dtype", None)
    if dtype not in jit.FLOATS:
        return None
    for a in arrays:
        if not jit.readable(a, dtype):
            return None
        if ndim is not None and a.ndim != ndim:
            return None
    return k


def _writable(out, shape, dtype):
    """Whether ``out`` (None: the kernel allocates) is a buffer a kernel can write."""
    return out is None or jit.fits(out, shape, dtype)


def _window(size, stride, pad):
    """(kh, kw, sh, sw, ph, pw) as Python ints, or None for anything else (the pooling
    kernels are compiled one per window geometry they take: 2x2 and 3x3, stride 2)."""
    try:
        values = (*size, *stride, *pad)
    except TypeError:
        return None
    if len(values) != 6 or not all(isinstance(v, (int, numpy.integer)) for v in values):
        return None
    values = tuple(int(v) for v in values)
    return values if min(values[:4]) >= 1 and min(values[4:]) >= 0 else None


def _average(f, geometry):
    """Average pooling's kernel scalars, in the dtype type ``f``: 0, and 1 / (kh * kw)."""
    return f(0), f(1.0 / (geometry[0] * geometry[1]))


def _same_shape(k, arrays):
    """Whether kernels ``k`` are on and ``arrays`` share one shape of at least one axis (on
    0-d arrays NumPy's operators return scalars; the routine keeps that)."""
    return k is not None and arrays[0].ndim >= 1 and all(a.shape == arrays[0].shape for a in arrays)


class ElementwiseKernels:
    """Pooling and activations on the cpu kernels."""

    # -- activations (routines/activations.py) -------------------------------------------
    def relu(self, x, out=None):
        k = _kernels_on((x,))
        if not _same_shape(k, (x,)) or not _writable(out, x.shape, x.dtype):
            return super().relu(x, out=out)
        out = numpy.empty_like(x) if out is None else out
        k.relu(jit.flat(x), x.dtype.type(0), jit.flat(out))
        return out

    def relu_backward(self, dout, y, out=None, mask=None):
        """As the routine, except that ``mask`` (a scratch buffer for NumPy's bool mask)
        is left unwritten: the kernel needs no mask."""
        k = _kernels_on((dout, y))
        if not _same_shape(k, (dout, y)) or not _writable(out, y.shape, y.dtype):
            return super().relu_backward(dout, y, out=out, mask=mask)
        out = numpy.empty_like(y) if out is None else out
        f = y.dtype.type
        k.relu_backward(jit.flat(dout), jit.flat(y), f(0), f(1), jit.flat(out))
        return out

    def sigmoid_backward(self, dout, y):
        return self._output_grad("sigmoid_backward", dout, y, super().sigmoid_backward)

    def tanh_backward(self, dout, y):
        return self._output_grad("tanh_backward", dout, y, super().tanh_backward)

    @staticmethod
    def _output_grad(name, dout, y, routine):
        """dL/dx from dout and the forward's output y by kernel ``name`` (one pass, the
        constant 1 in y's dtype), or by ``routine`` where the kernel does not take them."""
        k = _kernels_on((dout, y))
        if not _same_shape(k, (dout, y)):
            return routine(dout, y)
        out = numpy.empty_like(y)
        getattr(k, name)(jit.flat(dout), jit.flat(y), y.dtype.type(1), jit.flat(out))
        return out

    def leaky_relu_backward(self, dout, x, slope):
        k = _kernels_on((dout, x))
        if not _same_shape(k, (dout, x)) or type(slope) not in (float, int):
            return super().leaky_relu_backward(dout, x, slope)
        out = numpy.empty_like(x)
        f = x.dtype.type
        k.leaky_relu_backward(jit.flat(dout), jit.flat(x), f(1), f(slope), jit.flat(out))
        return out

    # -- pooling (routines/pool.py) ------------------------------------------------------
    def _pool_call(self, name, x, size, stride, pad, out):
        """(kernel, (ph, pw), output shape) when the pooling kernel ``name`` takes x, else None."""
        k, geometry = _kernels_on((x,), 4), _window(size, stride, pad)
        kernel = None if k is None or geometry is None else k.pool_kernel(name, *geometry[:4])
        if kernel is None:
            return None
        oh, ow = self._conv_geometry(x.shape, *geometry[:2], geometry[2:4], geometry[4:])
        shape = (*x.shape[:2], oh, ow)
        if oh < 1 or ow < 1 or not _writable(out, shape, x.dtype):
            return None
        return kernel, geometry, shape

    def _pool_forward(self, name, x, size, stride, pad, out, routine, constants):
        """Pooling ``name`` by its kernel, given ``constants(dtype type, geometry)`` (the
        kernel's scalars after the padding), or by ``routine`` where the kernel does not
        take x."""
        call = self._pool_call(name, x, size, stride, pad, out)
        if call is None:
            return routine(x, size, stride, pad, out=out)
        kernel, geometry, shape = call
        out = numpy.empty(shape, dtype=x.dtype) if out is None else out
        kernel(x, *geometry[4:], *constants(x.dtype.type, geometry), out)
        return out

    def max_pool(self, x, size, stride, pad, out=None):
        return self._pool_forward("max_pool", x, size, stride, pad, out, super().max_pool,
                                  lambda f, geometry: (f(-numpy.inf),))

    def max_pool_backward(self, dout, x, y, size, stride, pad):
        call = self._pool_call("max_pool_backward", x, size, stride, pad, None)
        if call is None or _kernels_on((x, y, dout)) is None or not (y.shape == dout.shape == call[2]):
            return super().max_pool_backward(dout, x, y, size, stride, pad)
        kernel, (kh, kw, sh, sw, ph, pw), shape = call
        overlap = sh < kh or sw < kw
        covered = not overlap and not (ph or pw) and x.shape[2:] == (shape[2] * kh, shape[3] * kw)
        f = x.dtype.type
        dx = numpy.empty_like(x)
        hit = numpy.empty(shape[2:], dtype=numpy.int32)
        kernel(dout, x, y, ph, pw, covered, f(-numpy.inf), f(0), f(1), hit, dx)
        return dx

    def avg_pool(self, x, size, stride, pad, out=None):
        return self._pool_forward("avg_pool", x, size, stride, pad, out, super().avg_pool, _average)

    def avg_pool_backward(self, dout, x_shape, size, stride, pad):
        k, geometry = _kernels_on((dout,), 4), _window(size, stride, pad)
        kernel = None if k is None or geometry is None else k.pool_kernel("avg_pool_backward", *geometry[:4])
        if kernel is None or len(x_shape) != 4:
            return super().avg_pool_backward(dout, x_shape, size, stride, pad)
        x_shape = tuple(int(n) for n in x_shape)
        oh, ow = self._conv_geometry(x_shape, *geometry[:2], geometry[2:4], geometry[4:])
        if (oh, ow) != dout.shape[2:] or x_shape[:2] != dout.shape[:2] or oh < 1 or ow < 1:
            return super().avg_pool_backward(dout, x_shape, size, stride, pad)
        dx = numpy.empty(x_shape, dtype=dout.dtype)
        kernel(dout, *geometry[4:], *_average(dout.dtype.type, geometry), dx)
        return dx
