"""PyTorch as an extra oracle where it is installed (the NumPy references are the main
one): convolution, pooling and softmax cross-entropy values and gradients in float64."""
import numpy
import pytest

import xpnet as xn

from .support import host_input

torch = pytest.importorskip("torch", reason="PyTorch is not installed here; it is an extra oracle only "
                                            "(the plain NumPy references in test_reference.py always run)")


@pytest.mark.parametrize("stride,pad", [((1, 1), (0, 0)), ((2, 1), (1, 2))])
def test_conv2d_matches_pytorch(stride, pad, device):
    layer = xn.nn.Conv2D(2, 3, (3, 2), stride=stride, pad=pad, dtype="float64", seed=0)
    x = host_input((2, 2, 5, 6))
    W = xn.to_host(layer.params()["W"])
    y = layer(xn.to_device(x, device))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, torch.tensor(W), torch.zeros(3, dtype=torch.float64), stride, pad)
    numpy.testing.assert_allclose(xn.to_host(y), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = host_input(tuple(y.shape), 1)
    (ty * torch.tensor(w)).sum().backward()
    numpy.testing.assert_allclose(xn.to_host(layer.backward(xn.to_device(w, device))), tx.grad.numpy(),
                                  rtol=1e-10, atol=1e-12)


def test_maxpool_matches_pytorch(device):
    x = host_input((2, 2, 5, 5))
    y = xn.nn.MaxPool2D(3, stride=2, pad=1)(xn.to_device(x, device))
    ty = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1)
    numpy.testing.assert_array_equal(xn.to_host(y), ty.numpy())


def test_softmax_cross_entropy_matches_pytorch(device):
    y, t = host_input((5, 4)), numpy.array([0, 3, 1, 1, 2])
    loss = xn.nn.SoftmaxCrossEntropy()(xn.to_device(y, device), xn.to_device(t, device))
    ref = torch.nn.functional.cross_entropy(torch.tensor(y), torch.tensor(t))
    assert float(xn.to_host(loss)) == pytest.approx(float(ref), rel=1e-12)
