"""Reverse-mode autodiff over the same ``xp`` arrays, micrograd-sized: ``core`` (the traced
``Tensor`` and its operations), ``activations``, ``extrema`` (abs, maximum, minimum, clip)
and ``losses`` (their rules on the backend's formulas), ``grad`` (``grad``,
``value_and_grad`` and the backward of a layer whose backward comes from autodiff)."""
from .activations import leaky_relu, relu, sigmoid, softmax
from .core import (  # noqa: F401 (xpnet.functional's)
    SUPPORTED,
    Tensor,
    _backend,
    _operand,
    add,
    astype,
    broadcast_to,
    divide,
    exp,
    getitem,
    log,
    matmul,
    max,
    mean,
    multiply,
    negative,
    power,
    reshape,
    sqrt,
    stop_gradient,
    sum,
    tanh,
    transpose,
    where,
)
from .extrema import absolute, clip, maximum, minimum
from .grad import grad, value_and_grad, vjp_of_traced
from .losses import mean_squared_error, softmax_cross_entropy, sum_squared_error

__all__ = ["Tensor", "grad", "value_and_grad", "vjp_of_traced", "exp", "log", "sqrt", "tanh", "sigmoid", "relu",
           "leaky_relu", "softmax", "where", "stop_gradient", "softmax_cross_entropy", "mean_squared_error",
           "sum_squared_error", "sum", "mean", "max", "reshape", "transpose", "astype", "SUPPORTED",
           "absolute", "maximum", "minimum", "clip"]
