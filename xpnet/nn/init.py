"""Weight initialisation, drawn on the host from a seeded generator and then moved.

Drawing on the host means the same seed gives the same weights on every device (cpu,
sim and cuda alike). ``xn.seed(n)`` reseeds the generator layers use by default.
"""
from __future__ import annotations

import math

import numpy

_generator = numpy.random.default_rng()


def seed(n: int) -> None:
    """Reseed the host generator that layers draw their initial weights from."""
    global _generator
    _generator = numpy.random.default_rng(n)


def generator(seed_value=None) -> numpy.random.Generator:
    return _generator if seed_value is None else numpy.random.default_rng(seed_value)


def initial_weights(init, shape, fan_in: int, dtype, seed_value=None) -> numpy.ndarray:
    """Host weights of ``shape``: ``"he"`` (std sqrt(2/fan_in), for the ReLU family),
    ``"xavier"`` (std sqrt(1/fan_in), for sigmoid and tanh) or a number (that std)."""
    if init == "he":
        std = math.sqrt(2.0 / fan_in)
    elif init == "xavier":
        std = math.sqrt(1.0 / fan_in)
    elif isinstance(init, (int, float)) and not isinstance(init, bool) and init > 0:
        std = float(init)
    else:
        raise ValueError(f"init={init!r} is not an initialisation. Use 'he', 'xavier', "
                         f"or a positive number for a normal distribution's std.")
    return (generator(seed_value).standard_normal(shape) * std).astype(dtype)
