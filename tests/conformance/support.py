"""What the generic properties share: inputs, the aliasing check (property a and b), the
building blocks of the compositions, and a book-style user layer."""
from __future__ import annotations

import numpy

import xpnet as xn

F = xn.functional


def host_input(shape, seed=0, dtype="float64"):
    """A host array of standard normal values; the same (shape, seed) gives the same array."""
    return numpy.random.default_rng([seed, *shape]).standard_normal(shape).astype(dtype)


def snapshot(array):
    return xn.to_host(array).copy()


def unchanged(array, before, what):
    now = xn.to_host(array)
    assert now.shape == before.shape, f"{what} changed shape: {before.shape} -> {now.shape}"
    assert numpy.array_equal(now, before, equal_nan=True), \
        f"{what} changed: largest difference {numpy.max(numpy.abs(now - before))}"


def aliasing_check(model, x_host, device, seed=0):
    """Property a and b on one model: two forward/backward calls; neither call modifies
    what it is given (the input, the upstream gradient), and nothing the first returned
    (output, dL/dx, the gradients read from ``grads()`` as copies) changes on the second."""
    x1, x2 = (xn.to_device(x_host, device), xn.to_device(x_host[::-1].copy() * 0.5 + 0.1, device))
    x1_before, x2_before = snapshot(x1), snapshot(x2)
    y1 = model(x1)
    unchanged(x1, x1_before, "the input, by forward")
    y1_before = snapshot(y1)
    d1 = xn.to_device(host_input(y1.shape, seed + 1), device)
    d1_before = snapshot(d1)
    dx1 = model.backward(d1)
    unchanged(x1, x1_before, "the input, by backward")
    unchanged(d1, d1_before, "the upstream gradient, by backward")
    unchanged(y1, y1_before, "the output, by backward")
    dx1_before = None if dx1 is None else snapshot(dx1)
    y2 = model(x2)
    unchanged(x2, x2_before, "the second input, by forward")
    unchanged(y1, y1_before, "the first call's output, by the second forward")
    unchanged(x1, x1_before, "the first call's input, by the second forward")
    if dx1 is not None:
        unchanged(dx1, dx1_before, "the first call's dL/dx, by the second forward")
    d2 = xn.to_device(host_input(y2.shape, seed + 2), device)
    model.backward(d2)
    unchanged(y1, y1_before, "the first call's output, by the second backward")
    if dx1 is not None:
        unchanged(dx1, dx1_before, "the first call's dL/dx, by the second backward")
    unchanged(x2, x2_before, "the second input, by the second backward")


class BookSigmoid(xn.nn.Layer):
    """The book's Sigmoid (ch. 5.5.2): keeps its own output for backward."""

    def forward(self, x):
        xp = self.backend.xp
        out = 1 / (1 + xp.exp(-x))
        self.out = out
        return out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class BookAffine(xn.nn.Layer):
    """The book's Affine with its own backward: keeps its input (not a copy) for backward."""

    def __init__(self, i, o, dtype="float64"):
        super().__init__()
        self.add_param("W", numpy.random.default_rng([i, o]).standard_normal((i, o)).astype(dtype) / i ** 0.5)
        self.add_param("b", numpy.linspace(-0.1, 0.1, o).astype(dtype))

    def forward(self, x):
        self.x = x
        return x @ self.param("W") + self.param("b")

    def backward(self, dout):
        self.grad("W")[...] = self.x.T @ dout
        self.grad("b")[...] = dout.sum(axis=0)
        return dout @ self.param("W").T


def _view_lambda():
    return xn.nn.Lambda(lambda x: x[:, ::-1], name="reversed_view")


# Building blocks that keep the shape of what they are given, so every ordered pair of them
# fits: the 2-D family on (N, 4), the 4-D family on (N, 2, 3, 3). Each builds a new layer.
UNITS_2D = {
    "Affine": lambda dt: xn.nn.Affine(4, 4, dtype=dt, seed=1),
    "ReLU": lambda dt: xn.nn.ReLU(),
    "LeakyReLU": lambda dt: xn.nn.LeakyReLU(0.2),
    "Sigmoid": lambda dt: xn.nn.Sigmoid(),
    "Tanh": lambda dt: xn.nn.Tanh(),
    "Softmax": lambda dt: xn.nn.Softmax(),
    "Flatten": lambda dt: xn.nn.Flatten(),
    "Dropout": lambda dt: xn.nn.Dropout(0.3, seed=5),
    "BatchNorm": lambda dt: xn.nn.BatchNorm(4, dtype=dt),
    "LambdaSwish": lambda dt: xn.nn.Lambda(lambda x: x * F.sigmoid(x), name="swish"),
    "LambdaView": lambda dt: _view_lambda(),
    "BookSigmoid": lambda dt: BookSigmoid(),
    "BookAffine": lambda dt: BookAffine(4, 4, dtype=dt),
}

UNITS_4D = {
    "Conv2D": lambda dt: xn.nn.Conv2D(2, 2, 3, pad=1, dtype=dt, seed=1),
    "Conv2D_rect": lambda dt: xn.nn.Conv2D(2, 2, (1, 3), pad=(0, 1), dtype=dt, seed=2),
    "MaxPool2D": lambda dt: xn.nn.MaxPool2D(3, stride=1, pad=1),
    "AvgPool2D": lambda dt: xn.nn.AvgPool2D(3, stride=1, pad=1),
    "ReLU": lambda dt: xn.nn.ReLU(),
    "LeakyReLU": lambda dt: xn.nn.LeakyReLU(0.2),
    "Sigmoid": lambda dt: xn.nn.Sigmoid(),
    "Tanh": lambda dt: xn.nn.Tanh(),
    "Dropout": lambda dt: xn.nn.Dropout(0.3, seed=6),
    "BatchNorm": lambda dt: xn.nn.BatchNorm(2, dtype=dt),
    "LambdaSwish": lambda dt: xn.nn.Lambda(lambda x: x * F.sigmoid(x), name="swish"),
    "LambdaView": lambda dt: _view_lambda(),
    "BookSigmoid": lambda dt: BookSigmoid(),
}

# Layers that change the family: 4-D in, 2-D out (N, 2, 3, 3) -> (N, 18) or (N, 4).
BRIDGES = {
    "Flatten": lambda dt: xn.nn.Flatten(),
    "Affine": lambda dt: xn.nn.Affine(18, 4, dtype=dt, seed=3),
}
SHAPE_2D, SHAPE_4D = (3, 4), (2, 2, 3, 3)


def pairs(units):
    return [(a, b) for a in units for b in units]
