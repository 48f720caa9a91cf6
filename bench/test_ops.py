"""Array operations and single layers, each on every speed device."""
import numpy
import pytest
from conftest import sizes

import xpnet as xn


def _rand(device, *shape, dtype=numpy.float32, seed=0):
    host = numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return xn.to_device(host, device)


@sizes(quick=[256, 512, 1024], full=[256, 512, 1024, 2048, 4096, 8192])
def test_matmul(timed, speed_device, size):
    """float32 n x n matmul: 2 n^3 flop."""
    a = _rand(speed_device, size, size)
    b = _rand(speed_device, size, size, seed=1)
    xp = speed_device.xp
    out = xp.empty((size, size), dtype=numpy.float32)
    timed("matmul", lambda: xp.matmul(a, b, out=out), size, flop=2 * size ** 3)


@sizes(quick=[10 ** 3, 10 ** 5, 10 ** 6], full=[10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7, 10 ** 8])
def test_elementwise(timed, speed_device, size):
    """c = a * b + c in place (fused multiply-add in two passes): 3 reads and 1 write of 4 bytes."""
    a, b, c = (_rand(speed_device, size, seed=i) for i in range(3))
    xp = speed_device.xp
    tmp = xp.empty_like(a)

    def run():
        xp.multiply(a, b, out=tmp)
        c.__iadd__(tmp)
    timed("elementwise a*b+c", run, size, nbytes=4 * 4 * size)


@sizes(quick=[10 ** 3, 10 ** 5, 10 ** 6], full=[10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6, 10 ** 7, 10 ** 8])
def test_reduction(timed, speed_device, size):
    """sum of a float32 vector: reads 4 bytes per element."""
    a = _rand(speed_device, size)
    timed("reduction sum", lambda: a.sum(), size, nbytes=4 * size)


@sizes(quick=[100, 10000], full=[100, 1000, 10000, 100000])
def test_softmax_cross_entropy(timed, speed_device, size):
    """Forward and backward of softmax cross-entropy over 10 classes, batch = size."""
    with xn.use_device(speed_device):
        z = _rand(speed_device, size, 10)
        t = xn.to_device(numpy.arange(size) % 10, speed_device)
        loss = xn.nn.SoftmaxCrossEntropy()

        def run():
            loss(z, t)
            return loss.backward()
        timed("softmax cross-entropy fwd+bwd", run, size, nbytes=2 * 4 * 10 * size)


LAYERS = {
    "Affine 784->100": (lambda: xn.nn.Affine(784, 100), (100, 784), 6 * 100 * 784 * 100),
    "ReLU": (xn.nn.ReLU, (100, 1024), None),
    "Sigmoid": (xn.nn.Sigmoid, (100, 1024), None),
    "BatchNorm 1024": (lambda: xn.nn.BatchNorm(1024), (100, 1024), None),
    "Dropout 0.5": (lambda: xn.nn.Dropout(0.5, seed=0), (100, 1024), None),
    "Conv2D 1->30 5x5": (lambda: xn.nn.Conv2D(1, 30, 5), (100, 1, 28, 28), 6 * 100 * 24 * 24 * 30 * 25),
    "MaxPool2D 2x2": (lambda: xn.nn.MaxPool2D(2), (100, 30, 24, 24), None),
    "AvgPool2D 2x2": (lambda: xn.nn.AvgPool2D(2), (100, 30, 24, 24), None),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_forward_backward(timed, speed_device, name):
    """One layer's forward then backward at a typical MNIST batch of 100."""
    make, shape, flop = LAYERS[name]
    with xn.use_device(speed_device):
        layer = make()
        x = _rand(speed_device, *shape)
        dout = _rand(speed_device, *layer(x).shape, seed=1)

        def run():
            layer.forward(x)
            return layer.backward(dout)
        timed(f"layer {name} fwd+bwd", run, shape[0], flop=flop)


@sizes(quick=[2 ** 10, 2 ** 20, 2 ** 26], full=[2 ** 10, 2 ** 14, 2 ** 20, 2 ** 24, 2 ** 27, 2 ** 30])
@pytest.mark.parametrize("direction", ["h2d", "d2h"])
def test_transfer(timed, speed_device, size, direction):
    """Copies between host and device of ``size`` bytes (pageable host memory)."""
    if speed_device.kind == "cpu":
        pytest.skip("cpu: host arrays are device arrays; there is nothing to copy")
    host = numpy.ones(size // 4, dtype=numpy.float32)
    dev = xn.to_device(host, speed_device)
    fn = (lambda: xn.to_device(host, speed_device)) if direction == "h2d" else (lambda: xn.to_host(dev))
    timed(f"copy {direction}", fn, size, nbytes=size)
