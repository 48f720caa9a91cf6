"""The book's layers (ch. 5 and 6): Affine, activations, Dropout, BatchNorm, Flatten."""
from __future__ import annotations

import numpy

from .. import _validate
from ..errors import ShapeError
from ..transfer import to_device
from .init import generator, initial_weights
from .layer import Layer


class Affine(Layer):
    """y = x W + b, with W of shape (in_features, out_features) as in the book.

    Inputs with more than two axes are flattened per sample, like the book's Affine.
    """

    returns_input = False
    _unrecorded = ("x", "x_shape")  # set by each call

    def __init__(self, in_features: int, out_features: int, init="he", seed=None, dtype="float32"):
        super().__init__()
        self.in_features = _validate.integer("Affine", "in_features", in_features)
        self.out_features = _validate.integer("Affine", "out_features", out_features)
        dtype = numpy.dtype(dtype)
        self.add_param("W", initial_weights(init, (in_features, out_features), in_features, dtype, seed))
        self.add_param("b", numpy.zeros(out_features, dtype=dtype))
        self.x = None

    def describe(self):
        return f"Affine {self.in_features}->{self.out_features}"

    def forward(self, x):
        W = self.param("W")
        self.x_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(f"got input of shape {tuple(self.x_shape)}; expected (N, {self.in_features}).")
        self.x = x = self._as_dtype(x, W.dtype)
        out = self.workspace("y", (x.shape[0], self.out_features), W.dtype)
        return self.backend.affine(x, W, self.param("b"), out=out)

    def backward(self, dout):
        W = self.param("W")
        dout = self._as_dtype(dout, W.dtype)
        dx = self.workspace("dx", self.x.shape, W.dtype) if self._need_dx else None
        dx = self.backend.affine_backward(dout, self.x, W, self.grad("W"), self.grad("b"),
                                          dx=dx, need_dx=self._need_dx)
        if dx is not None and len(self.x_shape) != 2:
            dx = dx.reshape(self.x_shape)
        return dx


class _Activation(Layer):
    """An element-wise activation. Integer and bool inputs are cast to float32; the
    output, and the input gradient, go into the layer's workspace where its
    Sequential allows (never into the array it was given)."""

    returns_input = False
    _unrecorded = ("x", "y")  # set by each call

    def _input(self, x):
        x = self._as_float(x)
        return x, self.workspace("y", x.shape, x.dtype)


class ReLU(_Activation):
    """max(x, 0). Backward multiplies by the mask of positive outputs."""

    def forward(self, x):
        x, out = self._input(x)
        self.y = self.backend.relu(x, out=out)
        return self.y

    def backward(self, dout):
        y = self.y
        mask = self.workspace("mask", y.shape, bool)
        return self.backend.relu_backward(self._as_dtype(dout, y.dtype), y, out=self.workspace("dx", y.shape, y.dtype),
                                          mask=mask)


class LeakyReLU(_Activation):
    """x for x > 0, slope * x otherwise (0 <= slope <= 1)."""

    slope = _validate.Setting(_validate.between(0, 1))

    def __init__(self, slope: float = 0.01):
        super().__init__()
        self.slope = slope

    def describe(self):
        return f"LeakyReLU({self.slope})"

    def forward(self, x):
        self.x, out = self._input(x)
        return self.backend.leaky_relu(self.x, self.slope, out=out)

    def backward(self, dout):
        return self.backend.leaky_relu_backward(self._as_dtype(dout, self.x.dtype), self.x, self.slope)


class Sigmoid(_Activation):
    def forward(self, x):
        x, out = self._input(x)
        self.y = self.backend.sigmoid(x, out=out)
        return self.y

    def backward(self, dout):
        return self.backend.sigmoid_backward(self._as_dtype(dout, self.y.dtype), self.y)


class Tanh(_Activation):
    def forward(self, x):
        x, out = self._input(x)
        self.y = self.backend.tanh(x, out=out)
        return self.y

    def backward(self, dout):
        return self.backend.tanh_backward(self._as_dtype(dout, self.y.dtype), self.y)


class Softmax(_Activation):
    """Softmax over ``axis`` (overflow-safe). For training, prefer SoftmaxCrossEntropy."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        x, out = self._input(x)
        self.y = self.backend.softmax(x, axis=self.axis, out=out)
        return self.y

    def backward(self, dout):
        return self.backend.softmax_backward(self._as_dtype(dout, self.y.dtype), self.y, axis=self.axis)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)); backward restores the shape."""

    returns_input = True
    _unrecorded = ("x_shape", "x_dtype")  # set by each call

    def forward(self, x):
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        dout = dout.reshape(self.x_shape)
        return dout if self.x_dtype.kind != "f" else self._as_dtype(dout, self.x_dtype)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest
    by 1/(1-p); in eval mode, the identity.

    The mask is drawn on the device from a counter-based generator (Philox4x32-10) whose
    counter lives on the device too: a recorded step draws a new mask on every replay, the
    same ``seed`` gives the same masks on cpu, sim and CUDA, and without a seed the layer
    takes one from ``xn.seed``'s generator, so a seeded run is reproducible.
    """

    returns_input = True  # in eval mode
    _unrecorded = ("dtype", "mask")  # set by each call

    p = _validate.Setting(_validate.between(0, 1, high_open=True))

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        self.p = p
        self.seed = int(generator().integers(2 ** 63)) if seed is None else int(seed)
        self.key = (self.seed & 0xFFFFFFFF, (self.seed >> 32) & 0xFFFFFFFF)
        self._offset = self.backend.xp.zeros((), dtype=numpy.uint64)  # the generator's counter, on the device

    def describe(self):
        return f"Dropout({self.p})"

    def random_state(self):
        return {"offset": self._offset}

    def to(self, device):
        self._offset = to_device(self._offset, device)
        return super().to(device)

    def forward(self, x):
        x = self._as_float(x)
        self.dtype = x.dtype
        if not self.training or self.p == 0:
            self.mask = None
            return x
        self.mask = self.backend.dropout_mask(self.key, self._offset, x.shape, self.p, x.dtype,
                                              out=self.workspace("mask", x.shape, x.dtype))
        return x * self.mask

    def backward(self, dout):
        dout = self._as_dtype(dout, self.dtype)
        return dout if self.mask is None else dout * self.mask


class BatchNorm(Layer):
    """Batch normalisation (book ch. 6.3) over the features of (N, D) or channels of (N, C, H, W).

    Running mean and variance (``momentum`` weighting the old value) are used in eval mode
    and saved with the model.
    """

    returns_input = False
    nonnegative_buffers = ("running_var",)
    _unrecorded = ("trained", "x_shape")  # set by each call

    momentum = _validate.Setting(_validate.between(0, 1))
    eps = _validate.Setting(_validate.between(0, low_open=True))

    def __init__(self, num_features: int, momentum: float = 0.9, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.num_features = _validate.integer("BatchNorm", "num_features", num_features)
        self.momentum, self.eps = momentum, eps
        dtype = numpy.dtype(dtype)
        self.add_param("gamma", numpy.ones(num_features, dtype=dtype))
        self.add_param("beta", numpy.zeros(num_features, dtype=dtype))
        self.add_buffer("running_mean", numpy.zeros(num_features, dtype=dtype))
        self.add_buffer("running_var", numpy.ones(num_features, dtype=dtype))

    def describe(self):
        return f"BatchNorm({self.num_features})"

    def forward(self, x):
        self.x_shape = x.shape
        if x.ndim not in (2, 4) or x.shape[1] != self.num_features:
            raise ShapeError(f"got input of shape {tuple(self.x_shape)}; expected "
                             f"(N, {self.num_features}) or (N, {self.num_features}, H, W).")
        x = self._as_dtype(x, self.param("gamma").dtype)
        if self.training and x.size <= self.num_features:
            if x.size == 0:
                why = ("an empty training batch: it has no mean or variance, so the running statistics "
                       "would become NaN", "leave empty batches out, or call model.eval() to run them")
            else:
                why = ("a training batch of one value per feature: its variance is 0, so the output would be "
                       "all zeros and the running variance would drift to 0",
                       "call model.eval() for inference on single samples")
            raise ShapeError(
                f"got {why[0]} (input shape {tuple(self.x_shape)}). Train with batches of 2 or more "
                f"(fit(..., drop_last=True) drops a short last batch), or {why[1]}.")
        self.trained = self.training  # backward differs after an eval-mode forward
        y, self.xn, self.std = self.backend.batchnorm_forward(
            x, self.param("gamma"), self.param("beta"), self.buffer("running_mean"),
            self.buffer("running_var"), self.momentum, self.eps, self.training)
        return y

    def backward(self, dout):
        dout = self._as_dtype(dout, self.param("gamma").dtype)
        return self.backend.batchnorm_backward(dout, self.param("gamma"), self.xn, self.std,
                                               self.grad("gamma"), self.grad("beta"), self.trained)


class Lambda(Layer):
    """A parameter-free layer from a function of its input, written with the operations of
    ``xn.functional`` and Python operators; its backward comes from autodiff:
    ``xn.nn.Lambda(lambda x: x * xn.functional.sigmoid(x))`` is Swish."""

    def __init__(self, fn, name: str = None):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "Lambda")

    def describe(self):
        return f"Lambda({self.name})"

    def forward(self, x):
        return self.fn(x)
