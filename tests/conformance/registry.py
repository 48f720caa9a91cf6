"""The conformance registry: one entry per built-in part (layer, loss, functional,
optimizer, schedule), with sample inputs and the extremes of every hyperparameter, in the
manner of PyTorch's OpInfo database. The generic tests in this package run over it.

A part that ``xn.nn``, ``xn.functional``, ``xn.optim``, ``xn.optim.schedules`` or ``xn.augment`` exports
must have an entry here (``test_registry.py`` fails otherwise), so a new part is covered
by every generic property the day it is added.

Every reference below is plain NumPy in float64 written from the formula (the book's, or
the docstring's), never by calling xpnet, so a wrong formula in the library cannot hide
behind the same formula in the test.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy

import xpnet as xn

F = xn.functional


# -- plain NumPy references (float64) ---------------------------------------------------------
def ref_sigmoid(x):
    return 1.0 / (1.0 + numpy.exp(-x))


def ref_softmax(x, axis=-1):
    e = numpy.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ref_leaky(x, slope):
    return numpy.where(x > 0, x, slope * x)


def ref_affine(x, p):
    return x.reshape(x.shape[0], -1) @ p["W"] + p["b"]


def _pad(x, ph, pw, value):
    return numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def ref_conv(x, p, stride, pad):
    W, b = p["W"], p["b"]
    f, c, kh, kw = W.shape
    xp_ = _pad(x, pad[0], pad[1], 0.0)
    n, _, h, w = xp_.shape
    oh, ow = (h - kh) // stride[0] + 1, (w - kw) // stride[1] + 1
    y = numpy.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp_[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            y[:, :, i, j] = numpy.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def ref_pool(x, size, stride, pad, kind):
    xp_ = _pad(x, pad[0], pad[1], -numpy.inf if kind == "max" else 0.0)
    n, c, h, w = xp_.shape
    oh, ow = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1
    y = numpy.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp_[:, :, i * stride[0]:i * stride[0] + size[0], j * stride[1]:j * stride[1] + size[1]]
            y[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return y


def ref_batchnorm(x, p, eps, training, buffers):
    shape = x.shape
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1).reshape(-1, shape[1])
    if training:
        mu, var = x.mean(axis=0), x.var(axis=0)
    else:
        mu, var = buffers["running_mean"], buffers["running_var"]
    y = (x - mu) / numpy.sqrt(var + eps) * p["gamma"] + p["beta"]
    if len(shape) == 4:
        n, c, h, w = shape
        y = y.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return y


def ref_softmax_cross_entropy(z, t):
    logp = numpy.log(ref_softmax(z, axis=1))
    if t.ndim == 1:
        return -logp[numpy.arange(len(z)), t].mean()
    return -(t * logp).sum() / len(z)


def ref_smoothed_cross_entropy(z, t, e):
    """PyTorch's label smoothing: the target (1 - e) t + e / C (t one-hot for indices)."""
    c = z.shape[1]
    target = numpy.eye(c)[t] if t.ndim == 1 else t
    return ref_softmax_cross_entropy(z, (1 - e) * target + e * target.sum(axis=1, keepdims=True) / c)


# -- layers ------------------------------------------------------------------------------------
@dataclasses.dataclass
class LayerSample:
    """One way to build and call a layer. ``make(dtype)`` builds it (layers without
    parameters ignore the dtype); ``reference(x, params, buffers, layer)`` is the plain
    NumPy forward, or None where the output is random (Dropout in training)."""

    id: str
    make: Callable
    shape: tuple
    reference: Callable | None
    eval_mode: bool = False
    deterministic: bool = True   # same input, same output on every call
    keeps_input: bool = False    # may return its input or a view of it (Flatten, eval Dropout)


@dataclasses.dataclass
class LayerEntry:
    name: str
    samples: list
    bad_args: list = dataclasses.field(default_factory=list)  # (id, build) pairs refused when built
    composable: bool = True  # usable in the generated pairs and triples of a Sequential


def _affine(i, o):
    return lambda dtype: xn.nn.Affine(i, o, dtype=dtype, seed=0)


def _conv(c, f, k, stride=1, pad=0):
    return lambda dtype: xn.nn.Conv2D(c, f, k, stride=stride, pad=pad, dtype=dtype, seed=0)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pool_sample(cls, kind, id, size, stride, pad, shape):
    st = _pair(size) if stride is None else _pair(stride)
    return LayerSample(id, lambda dtype: cls(size, stride=stride, pad=pad), shape,
                       lambda x, p, b, layer: ref_pool(x, _pair(size), st, _pair(pad), kind))


def _lambda_swish(dtype):
    return xn.nn.Lambda(lambda x: x * F.sigmoid(x), name="swish")


def _lambda_view(dtype):
    """A Lambda whose output is a view of its input (every other feature, reversed)."""
    return xn.nn.Lambda(lambda x: x[:, ::-2], name="view")


def _lambda_reshape(dtype):
    return xn.nn.Lambda(lambda x: x.reshape(x.shape[0], -1), name="reshape")


LAYERS = [
    LayerEntry("Affine", [
        LayerSample("2d", _affine(5, 3), (4, 5), lambda x, p, b, l: ref_affine(x, p)),
        LayerSample("4d_input", _affine(12, 3), (2, 3, 2, 2), lambda x, p, b, l: ref_affine(x, p)),
        LayerSample("one_by_one", _affine(1, 1), (3, 1), lambda x, p, b, l: ref_affine(x, p)),
        LayerSample("batch_of_one", _affine(5, 3), (1, 5), lambda x, p, b, l: ref_affine(x, p)),
    ], bad_args=[("in_features=0", lambda: xn.nn.Affine(0, 3)), ("out_features=-1", lambda: xn.nn.Affine(3, -1)),
                 ("in_features=2.5", lambda: xn.nn.Affine(2.5, 3)), ("init=-1", lambda: xn.nn.Affine(3, 3, init=-1)),
                 ("init='nope'", lambda: xn.nn.Affine(3, 3, init="nope"))]),
    LayerEntry("ReLU", [
        LayerSample("2d", lambda dtype: xn.nn.ReLU(), (4, 5), lambda x, p, b, l: numpy.maximum(x, 0)),
        LayerSample("4d", lambda dtype: xn.nn.ReLU(), (2, 3, 2, 2), lambda x, p, b, l: numpy.maximum(x, 0)),
    ]),
    LayerEntry("LeakyReLU", [
        LayerSample(f"slope_{s}", (lambda s: lambda dtype: xn.nn.LeakyReLU(s))(s), (4, 5),
                    (lambda s: lambda x, p, b, l: ref_leaky(x, s))(s)) for s in (0.0, 0.2, 1.0)
    ], bad_args=[("slope=-0.1", lambda: xn.nn.LeakyReLU(-0.1)), ("slope=1.5", lambda: xn.nn.LeakyReLU(1.5)),
                 ("slope=nan", lambda: xn.nn.LeakyReLU(float("nan")))]),
    LayerEntry("Sigmoid", [
        LayerSample("2d", lambda dtype: xn.nn.Sigmoid(), (4, 5), lambda x, p, b, l: ref_sigmoid(x)),
    ]),
    LayerEntry("Tanh", [
        LayerSample("2d", lambda dtype: xn.nn.Tanh(), (4, 5), lambda x, p, b, l: numpy.tanh(x)),
        LayerSample("4d", lambda dtype: xn.nn.Tanh(), (2, 3, 2, 2), lambda x, p, b, l: numpy.tanh(x)),
    ]),
    LayerEntry("Softmax", [
        LayerSample("last_axis", lambda dtype: xn.nn.Softmax(), (4, 5), lambda x, p, b, l: ref_softmax(x)),
        LayerSample("axis_0", lambda dtype: xn.nn.Softmax(axis=0), (4, 5), lambda x, p, b, l: ref_softmax(x, 0)),
    ]),
    LayerEntry("Flatten", [
        LayerSample("3d", lambda dtype: xn.nn.Flatten(), (2, 3, 2), lambda x, p, b, l: x.reshape(2, -1),
                    keeps_input=True),
        LayerSample("4d", lambda dtype: xn.nn.Flatten(), (2, 3, 4, 4), lambda x, p, b, l: x.reshape(2, -1),
                    keeps_input=True),
    ]),
    LayerEntry("Dropout", [
        LayerSample("p_0.3_train", lambda dtype: xn.nn.Dropout(0.3, seed=1), (4, 5), None, deterministic=False),
        LayerSample("p_0.9_train", lambda dtype: xn.nn.Dropout(0.9, seed=2), (4, 5), None, deterministic=False),
        LayerSample("p_0", lambda dtype: xn.nn.Dropout(0.0, seed=1), (4, 5), lambda x, p, b, l: x, keeps_input=True),
        LayerSample("eval", lambda dtype: xn.nn.Dropout(0.5, seed=1), (4, 5), lambda x, p, b, l: x,
                    eval_mode=True, keeps_input=True),
    ], bad_args=[("p=1", lambda: xn.nn.Dropout(1.0)), ("p=-0.1", lambda: xn.nn.Dropout(-0.1)),
                 ("p='half'", lambda: xn.nn.Dropout("half"))]),
    LayerEntry("BatchNorm", [
        LayerSample("2d", lambda dtype: xn.nn.BatchNorm(5, dtype=dtype), (6, 5),
                    lambda x, p, b, l: ref_batchnorm(x, p, l.eps, True, b)),
        LayerSample("4d", lambda dtype: xn.nn.BatchNorm(2, dtype=dtype), (3, 2, 2, 2),
                    lambda x, p, b, l: ref_batchnorm(x, p, l.eps, True, b)),
        LayerSample("momentum_0_eps_1", lambda dtype: xn.nn.BatchNorm(5, momentum=0.0, eps=1.0, dtype=dtype),
                    (6, 5), lambda x, p, b, l: ref_batchnorm(x, p, l.eps, True, b)),
        LayerSample("momentum_1", lambda dtype: xn.nn.BatchNorm(5, momentum=1.0, dtype=dtype), (2, 5),
                    lambda x, p, b, l: ref_batchnorm(x, p, l.eps, True, b)),
        LayerSample("eval", lambda dtype: xn.nn.BatchNorm(5, dtype=dtype), (6, 5),
                    lambda x, p, b, l: ref_batchnorm(x, p, l.eps, False, b), eval_mode=True),
    ], bad_args=[("num_features=0", lambda: xn.nn.BatchNorm(0)),
                 ("momentum=1.5", lambda: xn.nn.BatchNorm(3, momentum=1.5)),
                 ("momentum=-0.1", lambda: xn.nn.BatchNorm(3, momentum=-0.1)),
                 ("eps=0", lambda: xn.nn.BatchNorm(3, eps=0.0)),
                 ("eps=inf", lambda: xn.nn.BatchNorm(3, eps=float("inf")))]),
    LayerEntry("Lambda", [
        LayerSample("swish", _lambda_swish, (4, 5), lambda x, p, b, l: x * ref_sigmoid(x)),
        LayerSample("view", _lambda_view, (4, 5), lambda x, p, b, l: x[:, ::-2], keeps_input=True),
        LayerSample("reshape", _lambda_reshape, (2, 3, 2), lambda x, p, b, l: x.reshape(2, -1), keeps_input=True),
    ]),
    LayerEntry("Conv2D", [
        LayerSample("k3", _conv(2, 3, 3), (2, 2, 5, 5), lambda x, p, b, l: ref_conv(x, p, (1, 1), (0, 0))),
        LayerSample("k3_stride2_pad1", _conv(2, 3, 3, 2, 1), (2, 2, 5, 5),
                    lambda x, p, b, l: ref_conv(x, p, (2, 2), (1, 1))),
        LayerSample("rect_k2x3_stride1x2_pad1x0", _conv(2, 2, (2, 3), (1, 2), (1, 0)), (2, 2, 4, 6),
                    lambda x, p, b, l: ref_conv(x, p, (1, 2), (1, 0))),
        LayerSample("k1", _conv(3, 2, 1), (2, 3, 3, 3), lambda x, p, b, l: ref_conv(x, p, (1, 1), (0, 0))),
        LayerSample("kernel_equals_input", _conv(1, 2, 3), (3, 1, 3, 3),
                    lambda x, p, b, l: ref_conv(x, p, (1, 1), (0, 0))),
    ], bad_args=[("kernel_size=0", lambda: xn.nn.Conv2D(1, 1, 0)),
                 ("stride=0", lambda: xn.nn.Conv2D(1, 1, 3, stride=0)),
                 ("pad=-1", lambda: xn.nn.Conv2D(1, 1, 3, pad=-1)),
                 ("kernel_size=(1,2,3)", lambda: xn.nn.Conv2D(1, 1, (1, 2, 3))),
                 ("in_channels=0", lambda: xn.nn.Conv2D(0, 1, 3))]),
    LayerEntry("MaxPool2D", [
        _pool_sample(xn.nn.MaxPool2D, "max", "2x2", 2, None, 0, (2, 2, 4, 4)),
        _pool_sample(xn.nn.MaxPool2D, "max", "3_stride2_pad1", 3, 2, 1, (2, 2, 5, 5)),
        _pool_sample(xn.nn.MaxPool2D, "max", "rect_2x3_stride1x2", (2, 3), (1, 2), 0, (2, 2, 4, 7)),
        _pool_sample(xn.nn.MaxPool2D, "max", "overlapping_3_stride1", 3, 1, 0, (2, 1, 5, 5)),
        _pool_sample(xn.nn.MaxPool2D, "max", "remainder_2_on_5", 2, None, 0, (2, 2, 5, 5)),
    ], bad_args=[("size=0", lambda: xn.nn.MaxPool2D(0)), ("stride=0", lambda: xn.nn.MaxPool2D(2, stride=0)),
                 ("pad=2_on_size_2", lambda: xn.nn.MaxPool2D(2, pad=2))]),
    LayerEntry("AvgPool2D", [
        _pool_sample(xn.nn.AvgPool2D, "avg", "2x2", 2, None, 0, (2, 2, 4, 4)),
        _pool_sample(xn.nn.AvgPool2D, "avg", "3_stride2_pad1", 3, 2, 1, (2, 2, 5, 5)),
        _pool_sample(xn.nn.AvgPool2D, "avg", "rect_2x3_stride1x2", (2, 3), (1, 2), 0, (2, 2, 4, 7)),
        _pool_sample(xn.nn.AvgPool2D, "avg", "remainder_2_on_5", 2, None, 0, (2, 2, 5, 5)),
    ], bad_args=[("size=0", lambda: xn.nn.AvgPool2D(0)), ("pad=-1", lambda: xn.nn.AvgPool2D(2, pad=-1))]),
]

# Exports of xn.nn that are not layers to sample: the base class and the container (the
# compositions test Sequential), and the losses (LOSSES below).
NOT_SAMPLED = {"Layer": "the abstract base; tested through every layer and the user layers of the compositions",
               "Sequential": "the container; tested by the compositions (pairs, triples, nesting)"}


# -- losses --------------------------------------------------------------------------------------
def _labels(kind, n, c, rng):
    if kind == "index":
        return rng.integers(0, c, n)
    if kind == "onehot":
        return numpy.eye(c)[rng.integers(0, c, n)]
    soft = rng.random((n, c)) + 0.05
    return soft / soft.sum(axis=1, keepdims=True)


@dataclasses.dataclass
class LossSample:
    id: str
    make: Callable
    y_shape: tuple
    target: Callable  # rng -> host target
    reference: Callable


LOSSES = {
    "SoftmaxCrossEntropy": [
        LossSample(f"{kind}_n{n}", xn.nn.SoftmaxCrossEntropy, (n, 4),
                   (lambda kind, n: lambda rng: _labels(kind, n, 4, rng))(kind, n), ref_softmax_cross_entropy)
        for kind in ("index", "onehot", "soft") for n in (1, 5)
    ] + [
        LossSample(f"{kind}_label_smoothing_{e}", (lambda e: lambda: xn.nn.SoftmaxCrossEntropy(label_smoothing=e))(e),
                   (5, 4), (lambda kind: lambda rng: _labels(kind, 5, 4, rng))(kind),
                   (lambda e: lambda y, t: ref_smoothed_cross_entropy(y, t, e))(e))
        for kind in ("index", "soft") for e in (0.1, 1.0)
    ],
    "MeanSquaredError": [
        LossSample("2d", xn.nn.MeanSquaredError, (5, 3), lambda rng: rng.standard_normal((5, 3)),
                   lambda y, t: ((y - t) ** 2).mean()),
        LossSample("1d", xn.nn.MeanSquaredError, (7,), lambda rng: rng.standard_normal(7),
                   lambda y, t: ((y - t) ** 2).mean()),
    ],
}


# -- functional ----------------------------------------------------------------------------------
@dataclasses.dataclass
class FunctionalEntry:
    """``call(F, x)`` applies the function to one array argument (the others fixed);
    ``reference(x)`` is its plain NumPy value; ``differentiable``: its gradient is checked."""

    name: str
    call: Callable
    reference: Callable
    shape: tuple = (4, 5)
    positive: bool = False  # the input must be > 0 (log, sqrt)
    differentiable: bool = True
    function: str = ""      # the exported name, when ``name`` is one variant of it

    def __post_init__(self):
        self.function = self.function or self.name


_T = numpy.random.default_rng(7).standard_normal((4, 5))      # a fixed second operand
_IDX = numpy.array([0, 3, 1, 4])                               # fixed class indices for 4 rows of 5
_ONEHOT = numpy.eye(5)[_IDX]


def _on(x, a):
    """``a`` (a host constant) on ``x``'s device and in its dtype."""
    raw = x.data if isinstance(x, xn.autodiff.Tensor) else x
    return xn.to_device(a.astype(raw.dtype) if a.dtype.kind == "f" else a, xn.device_of(raw))


FUNCTIONAL = [
    FunctionalEntry("identity", lambda F, x: F.identity(x), lambda x: x, differentiable=False),
    FunctionalEntry("step", lambda F, x: F.step(x), lambda x: (x > 0).astype(x.dtype), differentiable=False),
    FunctionalEntry("sigmoid", lambda F, x: F.sigmoid(x), ref_sigmoid),
    FunctionalEntry("tanh", lambda F, x: F.tanh(x), numpy.tanh),
    FunctionalEntry("relu", lambda F, x: F.relu(x), lambda x: numpy.maximum(x, 0)),
    FunctionalEntry("leaky_relu", lambda F, x: F.leaky_relu(x, 0.3), lambda x: ref_leaky(x, 0.3)),
    FunctionalEntry("softmax", lambda F, x: F.softmax(x), ref_softmax),
    FunctionalEntry("exp", lambda F, x: F.exp(x), numpy.exp),
    FunctionalEntry("log", lambda F, x: F.log(x), numpy.log, positive=True),
    FunctionalEntry("sqrt", lambda F, x: F.sqrt(x), numpy.sqrt, positive=True),
    FunctionalEntry("where", lambda F, x: F.where(_on(x, _T > 0), x, x * x), lambda x: numpy.where(_T > 0, x, x * x)),
    FunctionalEntry("stop_gradient", lambda F, x: x * F.stop_gradient(x), lambda x: x * x, differentiable=False),
    FunctionalEntry("cross_entropy_error_index", lambda F, x: F.cross_entropy_error(x, _on(x, _IDX)),
                    lambda x: -numpy.log(x[numpy.arange(4), _IDX] + 1e-7).sum() / 4,
                    positive=True, differentiable=False, function="cross_entropy_error"),
    FunctionalEntry("cross_entropy_error_soft", lambda F, x: F.cross_entropy_error(x, _on(x, ref_softmax(_T))),
                    lambda x: -(ref_softmax(_T) * numpy.log(x + 1e-7)).sum() / 4,  # the book's formula
                    positive=True, differentiable=False, function="cross_entropy_error"),
    FunctionalEntry("softmax_cross_entropy", lambda F, x: F.softmax_cross_entropy(x, _on(x, _IDX)),
                    lambda x: ref_softmax_cross_entropy(x, _IDX)),
    FunctionalEntry("softmax_cross_entropy_onehot", lambda F, x: F.softmax_cross_entropy(x, _on(x, _ONEHOT)),
                    lambda x: ref_softmax_cross_entropy(x, _ONEHOT), function="softmax_cross_entropy"),
    FunctionalEntry("softmax_cross_entropy_label_smoothing",
                    lambda F, x: F.softmax_cross_entropy(x, _on(x, _IDX), label_smoothing=0.2),
                    lambda x: ref_smoothed_cross_entropy(x, _IDX, 0.2), function="softmax_cross_entropy"),
    FunctionalEntry("mean_squared_error", lambda F, x: F.mean_squared_error(x, _on(x, _T)),
                    lambda x: ((x - _T) ** 2).mean()),
    FunctionalEntry("sum_squared_error", lambda F, x: F.sum_squared_error(x, _on(x, _T)),
                    lambda x: 0.5 * ((x - _T) ** 2).sum()),
]


# -- optimizers and schedules --------------------------------------------------------------------
def _rms(p, step, sq, lr, eps):
    return p - lr * step / (numpy.sqrt(sq) + eps)


@dataclasses.dataclass
class OptimizerEntry:
    """``make(model)`` builds it; ``reference(p, g, state, t)`` is one step in NumPy (float64),
    returning the new parameter and updating ``state`` (a dict) in place."""

    name: str
    make: Callable
    reference: Callable
    bad_args: list = dataclasses.field(default_factory=list)


def _ref_sgd(lr, wd=0.0):
    def step(p, g, s, t):
        return p - lr * (g + wd * p)
    return step


def _ref_momentum(lr, m):
    def step(p, g, s, t):
        s["v"] = m * s.get("v", 0.0) - lr * g
        return p + s["v"]
    return step


def _ref_nesterov(lr, m, wd=0.0):
    """PyTorch's SGD(nesterov=True) in the book's signs: v = m v - lr g; p += m v - lr g."""
    def step(p, g, s, t):
        g = g + wd * p
        s["v"] = m * s.get("v", 0.0) - lr * g
        return p + m * s["v"] - lr * g
    return step


def _ref_adagrad(lr, eps):
    def step(p, g, s, t):
        s["h"] = s.get("h", 0.0) + g * g
        return _rms(p, g, s["h"], lr, eps)
    return step


def _ref_rmsprop(lr, decay, eps):
    def step(p, g, s, t):
        s["h"] = decay * s.get("h", 0.0) + (1 - decay) * g * g
        return _rms(p, g, s["h"], lr, eps)
    return step


def _ref_adam(lr, b1, b2, eps, wd=0.0, decoupled=False):
    def step(p, g, s, t):
        if decoupled:
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        lr_t = lr * numpy.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        s["m"] = s.get("m", 0.0) + (1 - b1) * (g - s.get("m", 0.0))
        s["v"] = s.get("v", 0.0) + (1 - b2) * (g * g - s.get("v", 0.0))
        return _rms(p, s["m"], s["v"], lr_t, eps)
    return step


O = xn.optim
OPTIMIZERS = [
    OptimizerEntry("SGD", lambda m: O.SGD(m, lr=0.1), _ref_sgd(0.1),
                   bad_args=[("lr=0", lambda m: O.SGD(m, lr=0.0)), ("lr=-1", lambda m: O.SGD(m, lr=-1.0)),
                             ("lr=nan", lambda m: O.SGD(m, lr=float("nan"))),
                             ("weight_decay=-1", lambda m: O.SGD(m, lr=0.1, weight_decay=-1.0))]),
    OptimizerEntry("SGD_weight_decay", lambda m: O.SGD(m, lr=0.1, weight_decay=0.5), _ref_sgd(0.1, 0.5)),
    OptimizerEntry("Momentum", lambda m: O.Momentum(m, lr=0.1, momentum=0.9), _ref_momentum(0.1, 0.9),
                   bad_args=[("momentum=1", lambda m: O.Momentum(m, momentum=1.0)),
                             ("momentum=-0.5", lambda m: O.Momentum(m, momentum=-0.5))]),
    OptimizerEntry("Momentum_0", lambda m: O.Momentum(m, lr=0.1, momentum=0.0), _ref_momentum(0.1, 0.0)),
    OptimizerEntry("Momentum_nesterov", lambda m: O.Momentum(m, lr=0.1, momentum=0.9, nesterov=True),
                   _ref_nesterov(0.1, 0.9),
                   bad_args=[("nesterov='yes'", lambda m: O.Momentum(m, nesterov="yes"))]),
    OptimizerEntry("Momentum_nesterov_weight_decay",
                   lambda m: O.Momentum(m, lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1),
                   _ref_nesterov(0.1, 0.5, 0.1)),
    OptimizerEntry("AdaGrad", lambda m: O.AdaGrad(m, lr=0.1), _ref_adagrad(0.1, 1e-7),
                   bad_args=[("eps=-1e-8", lambda m: O.AdaGrad(m, eps=-1e-8))]),
    OptimizerEntry("RMSProp", lambda m: O.RMSProp(m, lr=0.01, decay=0.9), _ref_rmsprop(0.01, 0.9, 1e-7),
                   bad_args=[("decay=1", lambda m: O.RMSProp(m, decay=1.0)),
                             ("decay=-0.1", lambda m: O.RMSProp(m, decay=-0.1)),
                             ("eps=-1", lambda m: O.RMSProp(m, eps=-1.0))]),
    OptimizerEntry("RMSProp_decay_0", lambda m: O.RMSProp(m, lr=0.01, decay=0.0), _ref_rmsprop(0.01, 0.0, 1e-7)),
    OptimizerEntry("Adam", lambda m: O.Adam(m, lr=0.01), _ref_adam(0.01, 0.9, 0.999, 1e-7),
                   bad_args=[("beta1=1", lambda m: O.Adam(m, beta1=1.0)), ("beta2=1", lambda m: O.Adam(m, beta2=1.0)),
                             ("beta1=-0.1", lambda m: O.Adam(m, beta1=-0.1)),
                             ("eps=-1e-8", lambda m: O.Adam(m, eps=-1e-8))]),
    OptimizerEntry("Adam_beta_0_weight_decay", lambda m: O.Adam(m, lr=0.01, beta1=0.0, beta2=0.0, weight_decay=0.1),
                   _ref_adam(0.01, 0.0, 0.0, 1e-7, 0.1)),
    OptimizerEntry("AdamW", lambda m: O.AdamW(m, lr=0.01, weight_decay=0.1),
                   _ref_adam(0.01, 0.9, 0.999, 1e-7, 0.1, decoupled=True),
                   bad_args=[("weight_decay=-0.1", lambda m: O.AdamW(m, weight_decay=-0.1))]),
    OptimizerEntry("AdamW_no_decay", lambda m: O.AdamW(m, lr=0.01, weight_decay=0.0),
                   _ref_adam(0.01, 0.9, 0.999, 1e-7, 0.0, decoupled=True)),
]

NOT_SAMPLED_OPTIM = {"Optimizer": "the abstract base; tested through every optimizer"}


@dataclasses.dataclass
class ScheduleEntry:
    """``make(optimizer)`` builds it; ``reference(base_lr, epoch)`` is the rate after ``epoch`` epochs."""

    name: str
    make: Callable
    reference: Callable
    bad_args: list = dataclasses.field(default_factory=list)


_S = xn.optim.schedules
SCHEDULES = [
    ScheduleEntry("StepDecay", lambda o: _S.StepDecay(o, step_size=2, gamma=0.5),
                  lambda lr, e: lr * 0.5 ** (e // 2),
                  bad_args=[("step_size=0", lambda o: _S.StepDecay(o, step_size=0)),
                            ("gamma=0", lambda o: _S.StepDecay(o, step_size=1, gamma=0.0)),
                            ("gamma=1.5", lambda o: _S.StepDecay(o, step_size=1, gamma=1.5))]),
    ScheduleEntry("StepDecay_gamma_1", lambda o: _S.StepDecay(o, step_size=1, gamma=1.0), lambda lr, e: lr),
    ScheduleEntry("Cosine", lambda o: _S.Cosine(o, epochs=4, min_lr=0.001),
                  lambda lr, e: 0.001 + (lr - 0.001) * 0.5 * (1 + numpy.cos(numpy.pi * min(e, 4) / 4)),
                  bad_args=[("epochs=0", lambda o: _S.Cosine(o, epochs=0)),
                            ("min_lr=-1", lambda o: _S.Cosine(o, epochs=3, min_lr=-1.0)),
                            ("min_lr above lr", lambda o: _S.Cosine(o, epochs=3, min_lr=10.0))]),
    ScheduleEntry("Cosine_one_epoch", lambda o: _S.Cosine(o, epochs=1),
                  lambda lr, e: lr * 0.5 * (1 + numpy.cos(numpy.pi * min(e, 1)))),
]



@dataclasses.dataclass
class StepScheduleEntry:
    """A per-step schedule: ``make(optimizer)`` builds it (attached to the optimizer);
    ``reference(k)`` is the rate of step k (0 for the first), in plain float64 from the formula,
    for an optimizer built with lr=0.1; ``steps`` how many steps it schedules."""

    name: str
    make: Callable
    reference: Callable
    steps: int
    bad_args: list = dataclasses.field(default_factory=list)


def _ref_one_cycle(max_lr, total, pct=0.3, anneal="cos", div=25.0, final=1e4, three=False):
    """PyTorch's OneCycleLR rate (cycle_momentum=False), held after the last step."""
    lo = max_lr / div
    ends = ([(pct * total - 1, lo, max_lr), (2 * pct * total - 2, max_lr, lo), (total - 1, lo, lo / final)] if three
            else [(pct * total - 1, lo, max_lr), (total - 1, max_lr, lo / final)])

    def rate(k):
        k, start = min(k, total - 1), 0.0
        for i, (end, a, b) in enumerate(ends):
            if k <= end or i == len(ends) - 1:
                x = (k - start) / (end - start)
                return b + (a - b) / 2 * (numpy.cos(numpy.pi * x) + 1) if anneal == "cos" else a + (b - a) * x
            start = end
    return rate


def _ref_warmup(lr, warmup, total, min_lr, decay):
    def rate(k):
        if k < warmup:
            return lr * k / warmup
        x = (min(k, total) - warmup) / (total - warmup)
        return min_lr + (lr - min_lr) * (0.5 * (1 + numpy.cos(numpy.pi * x)) if decay == "cos" else 1 - x)
    return rate


STEP_SCHEDULES = [
    StepScheduleEntry("OneCycle", lambda o: _S.OneCycle(o, max_lr=0.5, total_steps=12), _ref_one_cycle(0.5, 12), 12,
                      bad_args=[("max_lr=0", lambda o: _S.OneCycle(o, max_lr=0.0, total_steps=10)),
                                ("total_steps=1", lambda o: _S.OneCycle(o, max_lr=0.1, total_steps=1)),
                                ("pct_start=1", lambda o: _S.OneCycle(o, max_lr=0.1, total_steps=10, pct_start=1.0)),
                                ("pct_start=0.05", lambda o: _S.OneCycle(o, max_lr=0.1, total_steps=10,
                                                                          pct_start=0.05)),
                                ("anneal='exp'", lambda o: _S.OneCycle(o, max_lr=0.1, total_steps=10, anneal="exp")),
                                ("div_factor=0", lambda o: _S.OneCycle(o, max_lr=0.1, total_steps=10, div_factor=0))]),
    StepScheduleEntry("OneCycle_linear_three_phase",
                      lambda o: _S.OneCycle(o, max_lr=0.5, total_steps=13, pct_start=0.25, anneal="linear",
                                            three_phase=True),
                      _ref_one_cycle(0.5, 13, 0.25, "linear", three=True), 13),
    StepScheduleEntry("WarmupCosine", lambda o: _S.WarmupCosine(o, warmup_steps=3, total_steps=10, min_lr=0.01),
                      _ref_warmup(0.1, 3, 10, 0.01, "cos"), 10,
                      bad_args=[("warmup_steps=-1", lambda o: _S.WarmupCosine(o, warmup_steps=-1, total_steps=10)),
                                ("total_steps=3", lambda o: _S.WarmupCosine(o, warmup_steps=3, total_steps=3)),
                                ("min_lr above lr", lambda o: _S.WarmupCosine(o, 1, 10, min_lr=1.0))]),
    StepScheduleEntry("WarmupCosine_no_warmup", lambda o: _S.WarmupCosine(o, warmup_steps=0, total_steps=7),
                      _ref_warmup(0.1, 0, 7, 0.0, "cos"), 7),
    StepScheduleEntry("WarmupLinear", lambda o: _S.WarmupLinear(o, warmup_steps=2, total_steps=9),
                      _ref_warmup(0.1, 2, 9, 0.0, "linear"), 9,
                      bad_args=[("min_lr=-1", lambda o: _S.WarmupLinear(o, warmup_steps=1, total_steps=5,
                                                                        min_lr=-1.0))]),
]

NOT_SAMPLED_SCHEDULES = {"Schedule": "the abstract base; tested through every schedule",
                         "StepSchedule": "the per-step schedules' base; tested through every one"}


# -- augmentations -------------------------------------------------------------------------------
@dataclasses.dataclass
class AugmentationEntry:
    """``make(seed)`` builds it; ``shape`` a batch it takes; ``outputs(x)`` every output one sample
    of ``x`` (C, H, W) may become (the reference: the draws decide which)."""

    name: str
    make: Callable
    shape: tuple
    outputs: Callable
    bad_args: list = dataclasses.field(default_factory=list)


def _translations(s):
    def outputs(x):
        c, h, w = x.shape
        padded = numpy.pad(x, ((0, 0), (s, s), (s, s)))
        return [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * s + 1) for dx in range(2 * s + 1)]
    return outputs


AUGMENTATIONS = [
    AugmentationEntry("RandomTranslate", lambda seed: xn.augment.RandomTranslate(2, seed=seed), (9, 2, 6, 5),
                      _translations(2),
                      bad_args=[("max_shift=-1", lambda: xn.augment.RandomTranslate(-1)),
                                ("max_shift=1.5", lambda: xn.augment.RandomTranslate(1.5)),
                                ("fill=nan", lambda: xn.augment.RandomTranslate(1, fill=float("nan")))]),
    AugmentationEntry("RandomTranslate_1", lambda seed: xn.augment.RandomTranslate(1, seed=seed), (4, 1, 3, 3),
                      _translations(1)),
]


# -- lookups for parametrize ---------------------------------------------------------------------
def layer_samples():
    """(id, entry, sample) for every layer sample."""
    return [(f"{e.name}-{s.id}", e, s) for e in LAYERS for s in e.samples]


def loss_samples():
    return [(f"{name}-{s.id}", name, s) for name, samples in LOSSES.items() for s in samples]


def registered_names():
    return {
        "nn": {e.name for e in LAYERS} | set(LOSSES) | set(NOT_SAMPLED),
        "functional": {e.function for e in FUNCTIONAL},
        "optim": {e.name.split("_")[0] for e in OPTIMIZERS} | set(NOT_SAMPLED_OPTIM),
        "schedules": ({e.name.split("_")[0] for e in SCHEDULES + STEP_SCHEDULES}
                      | set(NOT_SAMPLED_SCHEDULES)),
        "augment": {e.name.split("_")[0] for e in AUGMENTATIONS},
    }
