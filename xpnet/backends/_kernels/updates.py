"""Optimizer updates (routines/updates.py), on flat C-contiguous buffers."""
from __future__ import annotations

import numba
import numpy

from ._flags import JIT


@numba.njit(**JIT)
def sgd(p, g, lr):
    for i in range(p.size):
        p[i] -= g[i] * lr[()]


@numba.njit(**JIT)
def momentum(p, g, v, lr, mom):
    for i in range(p.size):
        vi = v[i] * mom
        vi -= g[i] * lr[()]
        v[i] = vi
        p[i] += vi


@numba.njit(inline="always", **JIT)
def _rms_step(step, sq, lr, eps):
    """lr * step / (sqrt(sq) + eps), in the portable ``_rms_step``'s order: the step
    AdaGrad, RMSProp and Adam share."""
    s = numpy.sqrt(sq)
    s += eps
    s = step / s
    s *= lr
    return s


@numba.njit(**JIT)
def adagrad(p, g, h, lr, eps):
    for i in range(p.size):
        gi = g[i]
        hi = h[i] + gi * gi
        h[i] = hi
        p[i] -= _rms_step(gi, hi, lr[()], eps)


@numba.njit(**JIT)
def rmsprop(p, g, h, lr, decay, one_minus_decay, eps):
    for i in range(p.size):
        gi = g[i]
        hi = h[i] * decay
        sq = gi * gi
        sq *= one_minus_decay
        hi += sq
        h[i] = hi
        p[i] -= _rms_step(gi, hi, lr[()], eps)


@numba.njit(**JIT)
def adam(p, g, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps):
    for i in range(p.size):
        gi = g[i]
        d = gi - m[i]
        d *= one_minus_beta1
        mi = m[i] + d
        m[i] = mi
        sq = gi * gi
        sq -= v[i]
        sq *= one_minus_beta2
        vi = v[i] + sq
        v[i] = vi
        p[i] -= _rms_step(mi, vi, lr_t[()], eps)


@numba.njit(**JIT)
def decay_gradient(p, g, wd, out):
    for i in range(p.size):
        d = p[i] * wd
        out[i] = d + g[i]
