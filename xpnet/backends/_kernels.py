"""The cpu backend's fused kernels, compiled by numba (imported only through ``jit.py``).

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

import numba
import numpy

_JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)

_MASK32 = numpy.uint64(0xFFFFFFFF)
_SHIFT = numpy.uint64(32)
_M0 = numpy.uint64(0xD2511F53)  # Philox4x32's multipliers (routines/random.py's _PHILOX_M)
_M1 = numpy.uint64(0xCD9E8D57)


# -- optimizer updates (routines/updates.py), on flat C-contiguous buffers ----------------
@numba.njit(**_JIT)
def sgd(p, g, lr):
    for i in range(p.size):
        p[i] -= g[i] * lr[()]


@numba.njit(**_JIT)
def momentum(p, g, v, lr, mom):
    for i in range(p.size):
        vi = v[i] * mom
        vi -= g[i] * lr[()]
        v[i] = vi
        p[i] += vi


@numba.njit(inline="always", **_JIT)
def _rms_step(step, sq, lr, eps):
    """lr * step / (sqrt(sq) + eps), in the portable ``_rms_step``'s order: the step
    AdaGrad, RMSProp and Adam share."""
    s = numpy.sqrt(sq)
    s += eps
    s = step / s
    s *= lr
    return s


@numba.njit(**_JIT)
def adagrad(p, g, h, lr, eps):
    for i in range(p.size):
        gi = g[i]
        hi = h[i] + gi * gi
        h[i] = hi
        p[i] -= _rms_step(gi, hi, lr[()], eps)


@numba.njit(**_JIT)
def rmsprop(p, g, h, lr, decay, one_minus_decay, eps):
    for i in range(p.size):
        gi = g[i]
        hi = h[i] * decay
        sq = gi * gi
        sq *= one_minus_decay
        hi += sq
        h[i] = hi
        p[i] -= _rms_step(gi, hi, lr[()], eps)


@numba.njit(**_JIT)
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


@numba.njit(**_JIT)
def decay_gradient(p, g, wd, out):
    for i in range(p.size):
        d = p[i] * wd
        out[i] = d + g[i]


# -- Dropout's Philox4x32-10 mask (routines/random.py) -------------------------------------
@numba.njit(**_JIT)
def dropout_mask(out, offset, round_keys, threshold, scale):
    """``out`` (flat) gets ``scale`` where the unit is kept, else 0: unit i takes word
    (c0, c2, c1, c3)[i // blocks] of counter offset + i % blocks, as the portable routine's
    layout gives. ``round_keys`` is (10, 2) uint64, ``threshold`` a uint64."""
    size = out.size
    blocks = (size + 3) // 4
    zero = out.dtype.type(0)
    base = offset[()]
    for j in range(blocks):
        ctr = base + numpy.uint64(j)  # wraps modulo 2^64 as the portable uint64 add does
        c0 = ctr & _MASK32
        c1 = ctr >> _SHIFT
        c2 = numpy.uint64(0)
        c3 = numpy.uint64(0)
        for r in range(10):
            p0 = _M1 * c2
            p1 = _M0 * c0
            c0 = (p0 >> _SHIFT) ^ c1 ^ round_keys[r, 0]
            c2 = (p1 >> _SHIFT) ^ c3 ^ round_keys[r, 1]
            c1 = p0 & _MASK32
            c3 = p1 & _MASK32
        i = j
        out[i] = scale if c0 >= threshold else zero
        i += blocks
        if i < size:
            out[i] = scale if c2 >= threshold else zero
        i += blocks
        if i < size:
            out[i] = scale if c1 >= threshold else zero
        i += blocks
        if i < size:
            out[i] = scale if c3 >= threshold else zero


# -- BatchNorm (routines/norm.py), training mode, x of shape (N, D) ------------------------
# NumPy sums x.sum(axis=0) of a C-contiguous (N, D) array (D >= 2) row by row into an
# accumulator that starts at 0, and mean() divides that sum by N (an intp: in float64,
# then rounded to the dtype); the kernels do the same, column by column.
@numba.njit(**_JIT)
def batchnorm_forward(x, gamma, beta, running_mean, running_var, mom, one_minus_mom, eps, y, xn, mu, var, std):
    n, d = x.shape
    count = numpy.float64(n)
    mu[:] = 0
    for i in range(n):
        for j in range(d):
            mu[j] += x[i, j]
    for j in range(d):
        mu[j] = numpy.float64(mu[j]) / count
    var[:] = 0
    for i in range(n):
        for j in range(d):
            c = x[i, j] - mu[j]
            xn[i, j] = c
            var[j] += c * c
    for j in range(d):
        var[j] = numpy.float64(var[j]) / count
        std[j] = numpy.sqrt(var[j] + eps)
    for i in range(n):
        for j in range(d):
            z = xn[i, j] / std[j]
            xn[i, j] = z
            t = z * gamma[j]
            y[i, j] = t + beta[j]
    for j in range(d):
        r = running_mean[j] * mom
        running_mean[j] = r + one_minus_mom * mu[j]
        r = running_var[j] * mom
        running_var[j] = r + one_minus_mom * var[j]


@numba.njit(**_JIT)
def batchnorm_backward(dout, gamma, xn, std, dgamma, dbeta, count, dx, scale):
    n, d = dout.shape
    dbeta[:] = 0
    dgamma[:] = 0
    for i in range(n):
        for j in range(d):
            dbeta[j] += dout[i, j]
            dgamma[j] += xn[i, j] * dout[i, j]
    for j in range(d):
        scale[j] = gamma[j] / std[j]
    for i in range(n):
        for j in range(d):
            t = xn[i, j] * (dgamma[j] / count)
            t = dout[i, j] - t
            t -= dbeta[j] / count
            dx[i, j] = t * scale[j]
