"""The cpu backend's convolution steps as numba kernels (backends/_kernels/conv.py).

``ConvKernels`` replaces the data-movement steps of routines/conv.py (col2im, the
conv+pool stage's grouped stride-1 im2col, the transposing copies around the product, the
conv+pool stage's element-wise passes) where ``jit.kernels()`` has them and the arrays are
what a kernel takes (float32/float64, C-contiguous, one dtype; the grouped im2col takes x
in any layout, as it copies x into its phase planes first); anything else runs the
routine (``super()``). The matrix products are untouched: they stay the routines'
``self.matmul`` calls. Each kernel equals its step bit for bit, so the cpu device stays
bit-identical to sim.
"""
from __future__ import annotations

import numpy

from . import jit

_PLACES = (numpy.dtype(numpy.uint8), numpy.dtype(numpy.int32))  # conv2d_maxpool's ``first``


def _kernels(x, *outputs):
    """The kernels, where ``x`` is a float C-contiguous array and every output fits
    (``(array, shape)`` pairs: writable, C-contiguous, of x's dtype); else None."""
    k = jit.kernels()
    if k is None or getattr(x, "dtype", None) not in jit.FLOATS or not jit.readable(x, x.dtype):
        return None
    return k if all(jit.fits(a, shape, x.dtype) for a, shape in outputs) else None


class ConvKernels:
    """Mixin of ``NumpyBackend`` (before ``PortableNumpyBackend``): routines/conv.py's
    steps, as kernels where they take the arrays."""

    def im2col(self, x, kh, kw, stride, pad, out=None, group=(1, 1)):
        """The conv+pool stage's columns (stride 1, grouped by pooling place) copied by
        kernel from the batch's phase planes (``_phases``): the same values."""
        n, c = x.shape[:2]
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        (gh, gw), shape = group, (c * kh * kw, n * oh * ow)
        k = jit.kernels()
        if (k is None or tuple(group) == (1, 1) or tuple(stride) != (1, 1) or oh % gh or ow % gw
                or x.dtype not in jit.FLOATS or not (out is None or jit.fits(out, shape, x.dtype))):
            return super().im2col(x, kh, kw, stride, pad, out=out, group=group)
        out = numpy.empty(shape, dtype=x.dtype) if out is None else out
        k.grouped_columns(self._phases(x, pad, gw), kh, kw, out.reshape(gh, gw, c, kh, kw, n, oh // gh, ow // gw))
        return out

    @staticmethod
    def _phases(x, pad, gw):
        """x (N, C, H, W) zero-padded by ``pad``, each row's columns split by their remainder
        mod gw: (N, C, gw, H + 2*ph, Wq), [.., s, r, t] the padded pixel (r, gw*t + s)."""
        n, c, h, w = x.shape
        (ph, pw) = pad
        phases = numpy.zeros((n, c, gw, h + 2 * ph, -(-(w + 2 * pw) // gw)), dtype=x.dtype)
        for s in range(gw):
            first = (s - pw) % gw  # the first column of x that lands in phase s
            columns = x[:, :, :, first::gw]
            start = (first + pw) // gw
            phases[:, :, s, ph:ph + h, start:start + columns.shape[3]] = columns
        return phases

    def col2im(self, col, x_shape, kh, kw, stride, pad):
        """Returns a C-contiguous image where the routine returns a view of a padded one:
        the same values."""
        n, c = x_shape[:2]
        oh, ow = self._conv_geometry(x_shape, kh, kw, stride, pad)
        k = _kernels(col)
        if k is None or col.shape != (c * kh * kw, n * oh * ow):
            return super().col2im(col, x_shape, kh, kw, stride, pad)
        img = numpy.empty(x_shape, dtype=col.dtype)
        k.col2im(col.reshape(c, kh, kw, n, oh, ow), stride[0], stride[1], pad[0], pad[1], img)
        return img

    def _conv_output(self, prod, b, out):
        f, n, oh, width = prod.shape
        ow = out.shape[-1]
        k = _kernels(prod, (out, (n, f, oh, ow))) if ow <= width else None
        if k is None or not (b is None or (jit.readable(b, prod.dtype) and b.shape == (f,))):
            return super()._conv_output(prod, b, out)
        k.conv_output(prod, numpy.zeros(1, prod.dtype) if b is None else b, b is not None, out)
        return out

    def _product_layout(self, dy, d4):
        n, f, oh, ow = dy.shape
        width = d4.shape[-1]
        k = _kernels(dy, (d4, (f, n, oh, width))) if width >= ow else None
        if k is None:
            return super()._product_layout(dy, d4)
        k.product_layout(dy, d4)

    def _running_max(self, place, pooled, first, k, temps):
        kern = _kernels(place, (pooled, place.shape))
        if kern is None or not (first.shape == place.shape and first.dtype in _PLACES and first.flags.c_contiguous):
            return super()._running_max(place, pooled, first, k, temps)
        kern.running_max(jit.flat(place), jit.flat(pooled), jit.flat(first), first.dtype.type(k))

    def _pooled_output(self, pooled, b, relu, out):
        f, n, qh, qw = pooled.shape
        k = _kernels(pooled, (out, (n, f, qh, qw)))
        if k is None or not (jit.readable(b, pooled.dtype) and b.shape == (f,)):
            return super()._pooled_output(pooled, b, relu, out)
        k.pooled_output(pooled, b, bool(relu), out)
        return out

    def _relu_grad_product(self, dout, y, d4, scratch):
        n, f, qh, qw = dout.shape
        k = _kernels(dout, (d4, (f, n, qh, qw)))
        if k is None or (y is not None and not (jit.readable(y, dout.dtype) and y.shape == dout.shape)):
            return super()._relu_grad_product(dout, y, d4, scratch)
        k.relu_grad_product(dout, dout if y is None else y, y is not None, d4)

    def _place_grad(self, d, first, k, size, temps, dy):
        dk = temps[1]
        kern = _kernels(d, (dk, d.shape)) if dy is None or _tiles(dy, d.shape, size) else None
        if kern is None or not (first.shape == d.shape and first.dtype in _PLACES and first.flags.c_contiguous):
            return super()._place_grad(d, first, k, size, temps, dy)
        kern.place_grad(jit.flat(d), jit.flat(first), first.dtype.type(k), jit.flat(dk))
        if dy is not None:  # NumPy's strided copy (see _kernels/conv.py)
            self._scatter_place(dk, k, size, dy)


def _tiles(dy, shape, size) -> bool:
    """Whether ``dy`` (N, F, QH*gh, QW*gw), writable and C-contiguous, is what the (F, N*QH*QW)
    gradients of the ``size`` (gh, gw) pooling windows' places make up."""
    (gh, gw), (f, m) = size, shape
    return (jit.fits(dy, dy.shape, dy.dtype) and dy.ndim == 4 and dy.shape[1] == f and dy.shape[2] % gh == 0
            and dy.shape[3] % gw == 0 and dy.shape[0] * (dy.shape[2] // gh) * (dy.shape[3] // gw) == m)
