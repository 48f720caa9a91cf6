"""Issue 15's models, each as a training step of xpnet, of a hand-tuned NumPy floor where
there is one, and of PyTorch eager: the book's SimpleConvNet with Adam, an MLP with Adam,
Dropout and BatchNorm, and each optimizer's update alone on a 1M-parameter model.

Every builder returns a callable that runs one step on fixed random data, on the CPU.
PyTorch is imported only by its builders, with NumPy's BLAS thread count.
"""
import numpy
from floor_cnn import FloorConvNet
from test_training import _blas_threads, _train_step

import xpnet as xn

OPTIMIZERS = ("SGD", "Momentum", "AdaGrad", "RMSProp", "Adam")


def _data(batch, shape, seed=0):
    rng = numpy.random.default_rng(seed)
    return rng.random((batch,) + shape, dtype=numpy.float32), rng.integers(0, 10, batch)


def _torch():
    import torch  # noqa: PLC0415 (a reference only, never an xpnet dependency)
    torch.set_num_threads(_blas_threads())
    torch.manual_seed(0)
    return torch


def convnet(seed=0):
    """The book's SimpleConvNet (ch. 7) on the current device."""
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Conv2D(1, 30, 5), xn.nn.ReLU(), xn.nn.MaxPool2D(2),
                            xn.nn.Affine(4320, 100), xn.nn.ReLU(), xn.nn.Affine(100, 10))


def regularised_mlp(seed=0):
    """784-256-256-10 with BatchNorm, ReLU and Dropout 0.2 after each hidden layer."""
    xn.seed(seed)
    parts = []
    for a, b in ((784, 256), (256, 256)):
        parts += [xn.nn.Affine(a, b), xn.nn.BatchNorm(b), xn.nn.ReLU(), xn.nn.Dropout(0.2, seed=seed)]
    return xn.nn.Sequential(*parts, xn.nn.Affine(256, 10))


def _xpnet_step(model, x, t):
    return _train_step(model, xn.optim.Adam(model, lr=1e-3), x, t)


def _torch_step(model, x, t, torch):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, t = torch.from_numpy(x), torch.from_numpy(t)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), t).backward()
        opt.step()
    return step


def cnn_steps(batch):
    """xpnet, the NumPy floor and PyTorch eager: SimpleConvNet with Adam at ``batch``."""
    x, t = _data(batch, (1, 28, 28))
    with xn.use_device("cpu"):
        steps = {"xpnet": _xpnet_step(convnet(), x, t)}
    floor = FloorConvNet(batch)
    steps["numpy-floor"] = lambda: floor.step(x, t)
    torch = _torch()
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))
    steps["torch"] = _torch_step(model, x, t, torch)
    return steps


def regularised_steps(batch):
    """xpnet and PyTorch eager: the Adam/Dropout/BatchNorm MLP at ``batch``."""
    x, t = _data(batch, (784,))
    with xn.use_device("cpu"):
        steps = {"xpnet": _xpnet_step(regularised_mlp(), x, t)}
    torch = _torch()
    nn = torch.nn
    parts = []
    for a, b in ((784, 256), (256, 256)):
        parts += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Dropout(0.2)]
    steps["torch"] = _torch_step(nn.Sequential(*parts, nn.Linear(256, 10)), x, t, torch)
    return steps


def optimizer_steps(name, size=1000):
    """xpnet and PyTorch: one update of a size x size (+ bias) model from fixed gradients."""
    rng = numpy.random.default_rng(0)
    with xn.use_device("cpu"):
        model = xn.nn.Affine(size, size)
        for g in model.grads().values():
            g[...] = rng.standard_normal(g.shape)
        opt = getattr(xn.optim, name)(model, lr=1e-3)
    torch = _torch()
    layer = torch.nn.Linear(size, size)
    for p in layer.parameters():
        p.grad = torch.randn_like(p)
    make = {"SGD": lambda p: torch.optim.SGD(p, lr=1e-3),
            "Momentum": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
            "AdaGrad": lambda p: torch.optim.Adagrad(p, lr=1e-3),
            "RMSProp": lambda p: torch.optim.RMSprop(p, lr=1e-3),
            "Adam": lambda p: torch.optim.Adam(p, lr=1e-3)}[name]
    return {"xpnet": opt.step, "torch": make(layer.parameters()).step}
