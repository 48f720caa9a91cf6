"""Convolution and pooling (book ch. 7) on NCHW batches.

A convolution is im2col and one matrix product for the whole batch, the one operation
both NumPy (BLAS) and CuPy (cuBLAS) run near peak; pooling is a running max or sum over
the window's strided slices. Both loop over the kernel's offsets, never over pixels. The
formulas are the backend's (backends/routines/conv.py, pool.py), so a backend may replace them.
"""
from __future__ import annotations

import numpy

from .. import _validate
from ..errors import ShapeError
from .init import initial_weights
from .layer import Layer
from .layers import ReLU
from .wrapping import reusable


def _output_size(size, kernel, stride, pad):
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ShapeError(f"an input of {size} pixels with kernel {kernel}, stride {stride} "
                         f"and pad {pad} leaves no output.")
    return out


class Conv2D(Layer):
    """2-D convolution. W: (out_channels, in_channels, kh, kw), b: (out_channels,)."""

    returns_input = False
    _unrecorded = ("x_shape",)  # set by each call

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
        self.add_param("W", initial_weights(init, (out_channels, in_channels, self.kh, self.kw),
                                             fan_in, dtype, seed))
        self.add_param("b", numpy.zeros(out_channels, dtype=dtype))

    def describe(self):
        return (f"Conv2D {self.in_channels}->{self.out_channels} {self.kh}x{self.kw}"
                f"{_geometry(self.stride, self.pad, (1, 1))}")

    def _input(self, x):
        """x checked and cast to the parameters' dtype, and the output's height and width."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"got input of shape {tuple(x.shape)}; expected "
                             f"(N, {self.in_channels}, H, W).")
        x = self._as_dtype(x, self.param("W").dtype)
        self.x_shape = x.shape
        return (x, _output_size(x.shape[2], self.kh, self.stride[0], self.pad[0]),
                _output_size(x.shape[3], self.kw, self.stride[1], self.pad[1]))

    def forward(self, x):
        x, oh, ow = self._input(x)
        y, self.col = self.backend.conv2d(
            x, self.param("W"), self.param("b"), self.stride, self.pad, scratch=self.workspace,
            out=self.workspace("y", (x.shape[0], self.out_channels, oh, ow), x.dtype))
        return y

    def backward(self, dout):
        dout = self._as_dtype(dout, self.param("W").dtype)
        return self.backend.conv2d_backward(dout, self.col, self.param("W"), self.x_shape, self.stride, self.pad,
                                            self.grad("W"), self.grad("b"), self._need_dx, scratch=self.workspace)

    def _fuse(self, following):
        """Conv2D [-> ReLU] -> MaxPool2D with non-overlapping, unpadded windows runs as one
        stage in a Sequential (``Backend.conv2d_maxpool``); the built-in classes only, so a
        subclass's own forward is never bypassed."""
        if type(self) is not Conv2D:
            return None
        relu = following[0] if following and type(following[0]) is ReLU else None
        rest = following[1:] if relu else following
        pool = rest[0] if rest else None
        if type(pool) is not MaxPool2D or not _tiling(pool):
            return None
        return _ConvMaxPool(self, relu, pool)


def _tiling(pool):
    """Whether ``pool``'s windows neither overlap nor reach into padding."""
    return pool.stride == (pool.ph, pool.pw) and pool.pad == (0, 0)


class _ConvMaxPool:
    """Sequential's stage for Conv2D [-> ReLU] -> MaxPool2D (see ``Conv2D._fuse``): the same
    values and gradients as the layers one by one, in one pass with no full-size ReLU or
    transposing copy. A window's maximum is found before the bias is added, so two products
    that differ by less than the bias's rounding are not a tie here (one by one they are,
    and the first takes the gradient). Taken for inputs whose convolution output the
    windows tile exactly; Sequential runs the layers one by one for any other."""

    def __init__(self, conv, relu, pool):
        self.conv, self.relu, self.pool = conv, relu, pool
        self.size = 3 if relu else 2  # layers it stands for

    def applies(self, x) -> bool:
        conv, (ph, pw) = self.conv, (self.pool.ph, self.pool.pw)
        if not _tiling(self.pool):  # the pooling was changed since the Sequential was built
            return False
        if x.ndim != 4 or x.shape[1] != conv.in_channels:
            return False
        oh, ow = conv.backend._conv_geometry(x.shape, conv.kh, conv.kw, conv.stride, conv.pad)
        return oh >= ph and ow >= pw and oh % ph == 0 and ow % pw == 0

    def _scratch(self, name, shape, dtype):
        return reusable(self.conv._work, name, shape, dtype, self.conv.backend.xp)

    def forward(self, x):
        conv, pool = self.conv, self.pool
        x, oh, ow = conv._input(x)
        shape = (x.shape[0], conv.out_channels, oh // pool.ph, ow // pool.pw)
        self.y, self.saved = conv.backend.conv2d_maxpool(
            x, conv.param("W"), conv.param("b"), conv.stride, conv.pad, (pool.ph, pool.pw),
            self.relu is not None, scratch=self._scratch, out=pool.workspace("y", shape, x.dtype))
        return self.y

    def backward(self, dout):
        conv = self.conv
        dout = conv._as_dtype(dout, self.y.dtype)
        return conv.backend.conv2d_maxpool_backward(
            dout, self.y, self.saved, conv.x_shape, conv.param("W"), conv.stride, conv.pad,
            (self.pool.ph, self.pool.pw), self.relu is not None, conv.grad("W"), conv.grad("b"),
            conv._need_dx, scratch=self._scratch)


def _geometry(stride, pad, default_stride):
    """' stride 2 pad 1' for messages, leaving out what is the default."""
    def text(v):
        return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"
    return ((f" stride {text(stride)}" if stride != default_stride else "")
            + (f" pad {text(pad)}" if pad != (0, 0) else ""))


class _Pool2D(Layer):
    """Pooling over ``size`` windows; ``stride`` defaults to the window (no overlap), and
    ``size``, ``stride`` and ``pad`` take an int or a (height, width) pair. Integer and
    bool inputs are cast to float32."""

    returns_input = False
    _unrecorded = ("x", "x_shape", "y")  # set by each call

    def __init__(self, size, stride=None, pad=0):
        super().__init__()
        name = type(self).__name__
        self.ph, self.pw = _validate.pair(name, "size", size)
        self.stride = (self.ph, self.pw) if stride is None else _validate.pair(name, "stride", stride)
        self.pad = _validate.pair(name, "pad", pad, minimum=0)

    def describe(self):
        return f"{type(self).__name__}({self.ph}x{self.pw}{_geometry(self.stride, self.pad, (self.ph, self.pw))})"

    def forward(self, x):
        if x.ndim != 4:
            raise ShapeError(f"got input of shape {tuple(x.shape)}; expected (N, C, H, W).")
        x = self._as_float(x)
        n, c, h, w = x.shape
        oh = _output_size(h, self.ph, self.stride[0], self.pad[0])
        ow = _output_size(w, self.pw, self.stride[1], self.pad[1])
        self.x = x
        out = self.workspace("y", (n, c, oh, ow), x.dtype)
        self.y = self._pool(x, (self.ph, self.pw), self.stride, self.pad, out=out)
        return self.y


class MaxPool2D(_Pool2D):
    """Max over each window; backward routes the gradient to the (first) arg-max. The
    padded border holds -inf, so a window's max is always one of its real inputs."""

    def __init__(self, size, stride=None, pad=0):
        super().__init__(size, stride, pad)
        if self.pad[0] > self.ph // 2 or self.pad[1] > self.pw // 2:
            raise ValueError(f"MaxPool2D: pad {self.pad} is more than half the window "
                             f"({self.ph}x{self.pw}), so a window could hold only padding. "
                             f"Use pad <= size // 2.")

    def _pool(self, *args, **kwargs):
        return self.backend.max_pool(*args, **kwargs)

    def backward(self, dout):
        dout = self._as_dtype(dout, self.y.dtype)
        return self.backend.max_pool_backward(dout, self.x, self.y, (self.ph, self.pw), self.stride, self.pad)


class AvgPool2D(_Pool2D):
    """Mean over each window (zero padding counts, as in PyTorch); backward spreads the
    gradient evenly."""

    def _pool(self, *args, **kwargs):
        return self.backend.avg_pool(*args, **kwargs)

    def backward(self, dout):
        dout = self._as_dtype(dout, self.x.dtype)
        return self.backend.avg_pool_backward(dout, self.x.shape, (self.ph, self.pw), self.stride, self.pad)
