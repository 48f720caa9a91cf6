"""Convolution and pooling (book ch. 7) on NCHW batches, by im2col.

im2col turns a convolution into one matrix product, the one operation both NumPy (BLAS)
and CuPy (cuBLAS) run near peak; its copy costs kh*kw strided slice copies of the batch,
vectorised over every pixel. The backend may replace im2col/col2im with faster kernels.
"""
from __future__ import annotations

import numpy

from .. import _validate
from ..errors import ShapeError
from .init import initial_weights
from .layer import Layer


def _output_size(size, kernel, stride, pad):
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ShapeError(f"an input of {size} pixels with kernel {kernel}, stride {stride} "
                         f"and pad {pad} leaves no output.")
    return out


class Conv2D(Layer):
    """2-D convolution. W: (out_channels, in_channels, kh, kw), b: (out_channels,)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, pad=0,
                 init="he", seed=None, dtype="float32"):
        super().__init__()
        name = type(self).__name__
        self.in_channels = _validate.integer(name, "in_channels", in_channels)
        self.out_channels = _validate.integer(name, "out_channels", out_channels)
        self.kh, self.kw = _validate.pair(name, "kernel_size", kernel_size)
        self.stride = _validate.pair(name, "stride", stride)
        self.pad = _validate.pair(name, "pad", pad, minimum=0)
        dtype = numpy.dtype(dtype)
        fan_in = in_channels * self.kh * self.kw
        self._add_param("W", initial_weights(init, (out_channels, in_channels, self.kh, self.kw),
                                             fan_in, dtype, seed))
        self._add_param("b", numpy.zeros(out_channels, dtype=dtype))

    def describe(self):
        return (f"Conv2D {self.in_channels}->{self.out_channels} {self.kh}x{self.kw}"
                f"{_geometry(self.stride, self.pad, (1, 1))}")

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"got input of shape {tuple(x.shape)}; expected "
                             f"(N, {self.in_channels}, H, W).")
        W = self._params["W"]
        self._check_float(x, W.dtype)
        n, _, h, w = x.shape
        oh = _output_size(h, self.kh, self.stride[0], self.pad[0])
        ow = _output_size(w, self.kw, self.stride[1], self.pad[1])
        self.x_shape = x.shape
        self.col = self.backend.im2col(x, self.kh, self.kw, self.stride, self.pad)  # (N, K, P)
        self.col_W = W.reshape(self.out_channels, -1)                               # (F, K)
        y = self.backend.matmul(self.col_W, self.col)                               # (N, F, P)
        y += self._params["b"].reshape(1, -1, 1)
        return y.reshape(n, self.out_channels, oh, ow)

    def backward(self, dout):
        xp = self.backend.xp
        n = dout.shape[0]
        dout = dout.reshape(n, self.out_channels, -1)                               # (N, F, P)
        dW = self._grads["W"].reshape(self.out_channels, -1)  # a view of the grad array
        dW[...] = xp.tensordot(dout, self.col, axes=([0, 2], [0, 2]))
        dout.sum(axis=(0, 2), out=self._grads["b"])
        if not self._need_dx:
            return None
        dcol = self.backend.matmul(self.col_W.T, dout)                              # (N, K, P)
        return self.backend.col2im(dcol, self.x_shape, self.kh, self.kw, self.stride, self.pad)


def _geometry(stride, pad, default_stride):
    """' stride 2 pad 1' for messages, leaving out what is the default."""
    def text(v):
        return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"
    return ((f" stride {text(stride)}" if stride != default_stride else "")
            + (f" pad {text(pad)}" if pad != (0, 0) else ""))


class _Pool2D(Layer):
    """Pooling over ``size`` windows; ``stride`` defaults to the window (no overlap), and
    ``size``, ``stride`` and ``pad`` take an int or a (height, width) pair."""

    fill = 0  # what the padded border holds

    def __init__(self, size, stride=None, pad=0):
        super().__init__()
        name = type(self).__name__
        self.ph, self.pw = _validate.pair(name, "size", size)
        self.stride = (self.ph, self.pw) if stride is None else _validate.pair(name, "stride", stride)
        self.pad = _validate.pair(name, "pad", pad, minimum=0)

    def describe(self):
        return f"{type(self).__name__}({self.ph}x{self.pw}{_geometry(self.stride, self.pad, (self.ph, self.pw))})"

    def _windows(self, x):
        """Pooling windows as (N, C, ph*pw, OH*OW), plus the output shape."""
        if x.ndim != 4:
            raise ShapeError(f"got input of shape {tuple(x.shape)}; expected (N, C, H, W).")
        n, c, h, w = x.shape
        oh = _output_size(h, self.ph, self.stride[0], self.pad[0])
        ow = _output_size(w, self.pw, self.stride[1], self.pad[1])
        self.x_shape = x.shape
        col = self.backend.im2col(x, self.ph, self.pw, self.stride, self.pad, fill=self.fill)
        return col.reshape(n, c, self.ph * self.pw, oh * ow), (n, c, oh, ow)

    def _image(self, dwin):
        return self.backend.col2im(dwin, self.x_shape, self.ph, self.pw, self.stride, self.pad)


class MaxPool2D(_Pool2D):
    """Max over each window; backward routes the gradient to the (first) arg-max. The
    padded border holds -inf, so a window's max is always one of its real inputs."""

    fill = -numpy.inf

    def forward(self, x):
        win, shape = self._windows(x)
        self.arg = win.argmax(axis=2)
        return win.max(axis=2).reshape(shape)

    def backward(self, dout):
        n, c = dout.shape[:2]
        k = self.ph * self.pw
        hit = self.backend.arange(k).reshape(1, 1, k, 1) == self.arg[:, :, None, :]
        return self._image(hit * dout.reshape(n, c, 1, -1))


class AvgPool2D(_Pool2D):
    """Mean over each window; backward spreads the gradient evenly."""

    def forward(self, x):
        win, shape = self._windows(x)
        return win.mean(axis=2).reshape(shape)

    def backward(self, dout):
        xp = self.backend.xp
        n, c = dout.shape[:2]
        k = self.ph * self.pw
        share = dout.reshape(n, c, 1, -1) * (1.0 / k)
        return self._image(xp.broadcast_to(share, (n, c, k, share.shape[-1])))
