"""BatchNorm (routines/norm.py), training mode: on x of shape (N, D) (``batchnorm_forward``,
``batchnorm_backward``) and on the channels of (N, C, H, W) as (N, C, H*W)
(``batchnorm_maps_*``). Two families, because the loops over an (N, D) batch vectorize
over D, and with a third, unit axis innermost they would not."""
from __future__ import annotations

import numba
import numpy

from ._flags import JIT


# The per-feature steps both families share: a feature's mean and variance from its sums
# (in float64, then rounded to the dtype, as mean() does), its std, and the running averages.
@numba.njit(inline="always", **JIT)
def _mean(total, count):
    for j in range(total.size):
        total[j] = numpy.float64(total[j]) / count


@numba.njit(inline="always", **JIT)
def _variance_std(var, count, eps, std):
    for j in range(var.size):
        var[j] = numpy.float64(var[j]) / count
        std[j] = numpy.sqrt(var[j] + eps)


@numba.njit(inline="always", **JIT)
def _running(running_mean, running_var, mu, var, mom, one_minus_mom):
    for j in range(mu.size):
        r = running_mean[j] * mom
        running_mean[j] = r + one_minus_mom * mu[j]
        r = running_var[j] * mom
        running_var[j] = r + one_minus_mom * var[j]


@numba.njit(inline="always", **JIT)
def _per_feature(gamma, std, dgamma, dbeta, count):
    """The backward's per-feature factors, each one division as the routine's vector ops make
    it, not one per element: gamma / std, dgamma / N and dbeta / N."""
    scale = numpy.empty_like(gamma)
    mean_g = numpy.empty_like(dgamma)
    mean_b = numpy.empty_like(dbeta)
    for j in range(dgamma.size):
        scale[j] = gamma[j] / std[j]
        mean_g[j] = dgamma[j] / count
        mean_b[j] = dbeta[j] / count
    return scale, mean_g, mean_b


# NumPy sums x.sum(axis=0) of a C-contiguous (N, D) array (D >= 2) row by row into an
# accumulator that starts at 0, and mean() divides that sum by N (an intp: in float64,
# then rounded to the dtype); the kernels do the same, column by column.
@numba.njit(**JIT)
def batchnorm_forward(x, gamma, beta, running_mean, running_var, mom, one_minus_mom, eps, y, xn, mu, var, std):
    n, d = x.shape
    count = numpy.float64(n)
    mu[:] = 0
    for i in range(n):
        for j in range(d):
            mu[j] += x[i, j]
    _mean(mu, count)
    var[:] = 0
    for i in range(n):
        for j in range(d):
            c = x[i, j] - mu[j]
            xn[i, j] = c
            var[j] += c * c
    _variance_std(var, count, eps, std)
    for i in range(n):
        for j in range(d):
            z = xn[i, j] / std[j]
            xn[i, j] = z
            t = z * gamma[j]
            y[i, j] = t + beta[j]
    _running(running_mean, running_var, mu, var, mom, one_minus_mom)


@numba.njit(**JIT)
def batchnorm_backward(dout, gamma, xn, std, dgamma, dbeta, count, dx):
    n, d = dout.shape
    dbeta[:] = 0
    dgamma[:] = 0
    for i in range(n):
        for j in range(d):
            dbeta[j] += dout[i, j]
            dgamma[j] += xn[i, j] * dout[i, j]
    scale, mean_g, mean_b = _per_feature(gamma, std, dgamma, dbeta, count)
    for i in range(n):
        for j in range(d):
            t = xn[i, j] * mean_g[j]
            t = dout[i, j] - t
            t -= mean_b[j]
            dx[i, j] = t * scale[j]


# The portable routine normalises rows: (N, D), or the (N*H*W, C) transpose of a 4-D batch.
# NumPy sums x.sum(axis=0) of a C-contiguous (M, C) array (C >= 2) row by row into an
# accumulator that starts at 0, and mean() divides that sum by M (an intp: in float64, then
# rounded to the dtype). Row m of that transpose is pixel (n, h, w) in row-major order, so
# the kernels, which add each channel's values in (n, s) order straight from (N, C, S),
# add them in the same order: the same sums, without the transposing copies. The sums run
# with the channel innermost (i, k, j), as NumPy's over the rows do: C independent chains
# of additions instead of one long chain per channel, whose latency would bound the loop.
@numba.njit(inline="always", **JIT)
def _channel_sums(x, total):
    total[:] = 0
    n, d, m = x.shape
    for i in range(n):
        for k in range(m):
            for j in range(d):
                total[j] += x[i, j, k]


# The element-wise steps below run image by image, channel by channel over a row of S
# values, which vectorizes (the division above all); only the sums keep the channel
# innermost. A channels-last result goes through one row of scratch, scattered into its
# image's (S, C) slab, which stays in cache. Against every pass with the channel innermost,
# on the 2-core EPYC: the speedrun's (128, 16, 12, 12) forward 0.35 against 0.62 ms and
# backward 0.39 against 0.83 ms, (100, 16, 28, 28) 1.3-1.4x (bench/results/cpu-2026-11-29/
# bn_maps.py). Each value is the same operations on the same operands: the same bits.
@numba.njit(inline="always", **JIT)
def _centre(x, mu, xn, var):
    """xn = x - mu, and var the sum of its squares, channel by channel in (n, s) order."""
    var[:] = 0
    n, d, m = x.shape
    for i in range(n):
        for j in range(d):
            u, src, dst = mu[j], x[i, j], xn[i, j]
            for k in range(m):
                dst[k] = src[k] - u
        for k in range(m):
            for j in range(d):
                c = xn[i, j, k]
                var[j] += c * c


@numba.njit(inline="always", **JIT)
def _scale_shift(xn, std, gamma, beta, y):
    """xn /= std, and y[i, k, j] (channels last, the layout of the routine's result) =
    xn[i, j, k] * gamma + beta."""
    n, d, m = xn.shape
    row = numpy.empty(m, dtype=xn.dtype)
    for i in range(n):
        for j in range(d):
            s, g, b, values = std[j], gamma[j], beta[j], xn[i, j]
            for k in range(m):
                z = values[k] / s
                values[k] = z
                t = z * g
                row[k] = t + b
            for k in range(m):
                y[i, k, j] = row[k]


@numba.njit(**JIT)
def batchnorm_maps_forward(x, gamma, beta, running_mean, running_var, mom, one_minus_mom, eps, y, xn, mu, var, std):
    """x and xn as (N, C, S), y as (N, S, C): channels last, as the routine's y lies (the
    transpose of its rows), so that what reads y next meets the same memory on cpu and sim."""
    count = numpy.float64(x.shape[0] * x.shape[2])
    _channel_sums(x, mu)
    _mean(mu, count)
    _centre(x, mu, xn, var)
    _variance_std(var, count, eps, std)
    _scale_shift(xn, std, gamma, beta, y)
    _running(running_mean, running_var, mu, var, mom, one_minus_mom)


@numba.njit(**JIT)
def batchnorm_maps_backward(dout, gamma, xn, std, dgamma, dbeta, count, dx):
    """dout and xn as (N, C, S), dx as (N, S, C): channels last, as the routine's dx lies."""
    n, d, m = dout.shape
    dbeta[:] = 0
    dgamma[:] = 0
    for i in range(n):
        for k in range(m):
            for j in range(d):
                dbeta[j] += dout[i, j, k]
                dgamma[j] += xn[i, j, k] * dout[i, j, k]
    scale, mean_g, mean_b = _per_feature(gamma, std, dgamma, dbeta, count)
    row = numpy.empty(m, dtype=dout.dtype)
    for i in range(n):
        for j in range(d):
            g, b, s, a, e = mean_g[j], mean_b[j], scale[j], xn[i, j], dout[i, j]
            for k in range(m):
                t = a[k] * g
                t = e[k] - t
                t -= b
                row[k] = t * s
            for k in range(m):
                dx[i, k, j] = row[k]
