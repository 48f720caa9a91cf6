"""The cpu backend's fused kernels, compiled by numba (imported only through ``jit.py``),
one module a family: updates (optimizers), random (Dropout's mask), norm (BatchNorm),
pool (max and average pooling), elementwise (activations), conv (the convolution's data
movement).

Each kernel is serial and does, element by element, exactly the arithmetic of the
portable NumPy routine it stands for (backends/routines/), in the same order and in the
arrays' own precision: the scalars come in already cast to the arrays' dtype (NumPy casts
a Python float to a float32 array's dtype before it multiplies), ``fastmath`` is off (no
contraction into FMA, no reassociation) and ``error_model="numpy"`` (division by zero
gives inf or NaN, as NumPy's does). So a kernel's result equals its routine's bit for bit,
and the cpu device stays bit-identical to sim, which runs the portable routines.

Kernels are compiled the first time a run calls them, for the dtypes it calls them with,
and cached on disk (``cache=True``; jit.py says where). One set of flags for all of them:
numba's cache key does not include ``parallel=`` or ``fastmath=`` (numba issue 6845).
"""
from __future__ import annotations

from .conv import (
    col2im,
    conv_output,
    grouped_columns,
    place_grad,
    pooled_output,
    product_layout,
    relu_grad_product,
    running_max,
)
from .elementwise import leaky_relu_backward, relu, relu_backward, sigmoid_backward, tanh_backward
from .norm import batchnorm_backward, batchnorm_forward, batchnorm_maps_backward, batchnorm_maps_forward
from .pool import for_geometry as pool_kernel
from .random import dropout_mask
from .updates import adagrad, adam, decay_gradient, momentum, rmsprop, sgd

__all__ = ["adagrad", "adam", "batchnorm_backward", "batchnorm_forward", "batchnorm_maps_backward",
           "batchnorm_maps_forward", "col2im", "conv_output", "decay_gradient", "dropout_mask", "grouped_columns",
           "leaky_relu_backward", "momentum", "place_grad", "pool_kernel", "pooled_output", "product_layout", "relu",
           "relu_backward", "relu_grad_product", "rmsprop", "running_max", "sgd", "sigmoid_backward", "tanh_backward"]
