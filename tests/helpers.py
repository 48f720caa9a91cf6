"""Numerical gradients for checking backward passes."""
import numpy

import xpnet as xn


def numerical_grad(f, x, h=1e-6):
    """Central differences of scalar f() with respect to device array x, perturbed in place.

    Error O(h^2) ~ 1e-12 plus rounding ~ eps/h ~ 1e-10 in float64: far inside 1e-6.
    """
    g = numpy.zeros(x.shape)
    flat = x.reshape(-1)  # a view: perturbing it perturbs x
    for i in range(flat.size):
        old = float(flat[i])
        flat[i] = old + h
        up = float(f())
        flat[i] = old - h
        down = float(f())
        flat[i] = old
        g.reshape(-1)[i] = (up - down) / (2 * h)
    return g


def relative_error(a, b):
    a, b = numpy.asarray(xn.to_host(a), dtype=float), numpy.asarray(xn.to_host(b), dtype=float)
    return float(numpy.max(numpy.abs(a - b)) / max(numpy.max(numpy.abs(a) + numpy.abs(b)), 1e-12))


def host_rand(rng, *shape, dtype="float64"):
    return rng.standard_normal(shape).astype(dtype)
