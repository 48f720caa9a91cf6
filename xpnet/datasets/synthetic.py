"""Small synthetic sets the articles behind xpnet train on, drawn on the host from a seed.

Each checks its arguments first and names the one that is wrong (a count of 0, a negative
noise, an empty range), rather than failing inside NumPy."""
from __future__ import annotations

import numpy

from .._validate import integer, real


def exp_regression(n: int = 1000, low: float = -2.0, high: float = 2.0, noise: float = 0.0, seed=None):
    """x uniform in [low, high], t = e^x (+ Gaussian noise): the Chainer article's task.

    Returns float32 arrays of shape (n, 1).
    """
    n = integer("exp_regression", "n", n)
    low, high = real("exp_regression", "low", low), real("exp_regression", "high", high)
    if not low < high:
        raise ValueError(f"exp_regression: low must be below high, got low={low!r}, high={high!r}.")
    noise = real("exp_regression", "noise", noise, low=0)
    rng = numpy.random.default_rng(seed)
    x = rng.uniform(low, high, size=(n, 1))
    t = numpy.exp(x) + noise * rng.standard_normal((n, 1))
    return x.astype(numpy.float32), t.astype(numpy.float32)


def spiral(n_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed=None):
    """Interleaved spirals, one arm per class (as in DeZero and CS231n). x: (N, 2), t: (N,)."""
    n_per_class = integer("spiral", "n_per_class", n_per_class)
    classes = integer("spiral", "classes", classes)
    noise = real("spiral", "noise", noise, low=0)
    rng = numpy.random.default_rng(seed)
    xs, ts = [], []
    for c in range(classes):
        r = numpy.linspace(0.0, 1.0, n_per_class)
        theta = numpy.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + noise * rng.standard_normal(n_per_class)
        xs.append(numpy.stack([r * numpy.sin(theta), r * numpy.cos(theta)], axis=1))
        ts.append(numpy.full(n_per_class, c))
    return numpy.concatenate(xs).astype(numpy.float32), numpy.concatenate(ts).astype(numpy.int64)


def two_moons(n: int = 200, noise: float = 0.1, seed=None):
    """Two interleaving half circles. x: (n, 2) float32, t: (n,) int64 in {0, 1}."""
    n = integer("two_moons", "n (at least one sample a moon)", n, minimum=2)
    noise = real("two_moons", "noise", noise, low=0)
    rng = numpy.random.default_rng(seed)
    half = n // 2
    a = numpy.linspace(0, numpy.pi, half)
    b = numpy.linspace(0, numpy.pi, n - half)
    x = numpy.concatenate([numpy.stack([numpy.cos(a), numpy.sin(a)], 1),
                           numpy.stack([1 - numpy.cos(b), 0.5 - numpy.sin(b)], 1)])
    x += noise * rng.standard_normal(x.shape)
    t = numpy.concatenate([numpy.zeros(half), numpy.ones(n - half)]).astype(numpy.int64)
    return x.astype(numpy.float32), t
