"""BatchNorm (routines/norm.py), training mode, x of shape (N, D)."""
from __future__ import annotations

import numba
import numpy

from ._flags import JIT


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


@numba.njit(**JIT)
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
