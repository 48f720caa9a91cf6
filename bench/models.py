"""Issue 15's models, each as a training step of xpnet, of a hand-tuned NumPy floor where
there is one, and of PyTorch eager: the book's SimpleConvNet and DeepConvNet with Adam, an
MLP with Adam, Dropout and BatchNorm, and each optimizer's update alone on a 1M-parameter
model.

Every builder returns a callable that runs one step on fixed random data, on the CPU.
PyTorch is imported only by its builders, with NumPy's BLAS thread count.
"""
import importlib.util
from pathlib import Path

import numpy
from floor_cnn import FloorConvNet
from test_training import _blas_threads, _train_step, torch_graph

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


def deep_convnet(seed=0):
    """The book's DeepConvNet (ch. 8), as examples/mnist_cnn.py --model deep builds it."""
    xn.seed(seed)
    return _example("mnist_cnn").deep_convnet()


def speedrun_cnn(seed=0):
    """examples/mnist_speedrun.py's CNN."""
    xn.seed(seed)
    return _example("mnist_speedrun").speedrun_cnn()


def _example(name):
    """The module of examples/<name>.py (the examples are scripts, not a package)."""
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def regularised_mlp(seed=0):
    """784-256-256-10 with BatchNorm, ReLU and Dropout 0.2 after each hidden layer."""
    xn.seed(seed)
    parts = []
    for a, b in ((784, 256), (256, 256)):
        parts += [xn.nn.Affine(a, b), xn.nn.BatchNorm(b), xn.nn.ReLU(), xn.nn.Dropout(0.2, seed=seed)]
    return xn.nn.Sequential(*parts, xn.nn.Affine(256, 10))


def _xpnet_step(model, x, t):
    return _train_step(model, xn.optim.Adam(model, lr=1e-3), x, t)


def _torch_step(model, x, t, torch, where="cpu", graph=False):
    """PyTorch's step on ``where``; with ``graph`` (CUDA), recorded the documented way:
    warm-up on a side stream, then the whole step captured, Adam with capturable=True."""
    model = model.to(where)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=graph)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, t = torch.from_numpy(x).to(where), torch.from_numpy(t).to(where)

    def step():
        opt.zero_grad(set_to_none=not graph)
        loss_fn(model(x), t).backward()
        opt.step()
    return torch_graph(torch, step, lambda: None, step) if graph else step


def _references(torch_model, x, t, device):
    """PyTorch eager on the same device kind, and its CUDA graph on CUDA."""
    if device.kind == "sim":
        return {}  # sim is a correctness device: PyTorch has no counterpart
    torch = _torch()
    where = "cpu" if device.kind != "cuda" else f"cuda:{device.index}"
    steps = {"torch": _torch_step(torch_model(torch), x, t, torch, where)}
    if device.kind == "cuda":
        steps["torch-graph"] = _torch_step(torch_model(torch), x, t, torch, where, graph=True)
    return steps


def _xpnet_steps(build, x, t, device):
    """xpnet kernel by kernel, and recorded where the device records (the step fit runs)."""
    with xn.use_device(device):
        steps = {"xpnet": _xpnet_step(build(), *xn.to_device((x, t)))}
        if device.backend.records:
            model = build()
            loss = xn.nn.SoftmaxCrossEntropy()
            steps["xpnet-graph"] = device.backend.record(
                _train_step(model, xn.optim.Adam(model, lr=1e-3), *xn.to_device((x, t)), loss=loss),
                owners=(model, loss))
    return steps


def _torch_convnet(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))


def _torch_deep_convnet(torch):
    nn, parts, channels = torch.nn, [], 1
    for i, (filters, pad) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))):
        parts += [nn.Conv2d(channels, filters, 3, padding=pad), nn.ReLU()]
        parts += [nn.MaxPool2d(2)] if i % 2 else []
        channels = filters
    return nn.Sequential(*parts, nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(50, 10), nn.Dropout(0.5))


def _torch_regularised(torch):
    nn = torch.nn
    parts = []
    for a, b in ((784, 256), (256, 256)):
        parts += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Dropout(0.2)]
    return nn.Sequential(*parts, nn.Linear(256, 10))


def cnn_steps(batch, device="cpu"):
    """xpnet, the NumPy floor (on the CPU) and PyTorch: SimpleConvNet with Adam at ``batch``."""
    device = xn.Device(device)
    x, t = _data(batch, (1, 28, 28))
    steps = _xpnet_steps(convnet, x, t, device)
    if device.kind == "cpu":
        floor = FloorConvNet(batch)
        steps["numpy-floor"] = lambda: floor.step(x, t)
    steps.update(_references(_torch_convnet, x, t, device))
    return steps


def deepconv_steps(batch, device="cpu"):
    """xpnet and PyTorch: the book's DeepConvNet with Adam at ``batch`` (no floor)."""
    device = xn.Device(device)
    x, t = _data(batch, (1, 28, 28))
    steps = _xpnet_steps(deep_convnet, x, t, device)
    steps.update(_references(_torch_deep_convnet, x, t, device))
    return steps


def regularised_steps(batch, device="cpu"):
    """xpnet and PyTorch: the Adam/Dropout/BatchNorm MLP at ``batch``."""
    device = xn.Device(device)
    x, t = _data(batch, (784,))
    steps = _xpnet_steps(regularised_mlp, x, t, device)
    steps.update(_references(_torch_regularised, x, t, device))
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
