"""Whole training steps: the TF2 article's MLP across batch sizes (from which batch does
the GPU win?), a large MLP, the book's CNN, autodiff against backward, and, for issue 7,
xpnet against a hand-tuned NumPy floor and PyTorch eager, side by side in one run."""
import numpy
import pytest
from conftest import impls, sizes
from floor import FloorMLP

import xpnet as xn

MLP = [784, 100, 50, 10]
LARGE = [784, 1024, 1024, 10]


def _flop(layers, batch):
    """Forward 2*in*out per sample and layer, backward twice that."""
    return 6 * batch * sum(a * b for a, b in zip(layers, layers[1:]))


def _batch(device, batch, shape=(784,), seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.random((batch,) + shape, dtype=numpy.float32)
    t = rng.integers(0, 10, batch)
    return xn.to_device((x, t), device)


def mlp(layers=MLP, seed=0):
    """Affine layers of these widths with ReLU between them, drawn from ``seed``, on the
    current device (the benchmarks' and bench scripts' model)."""
    xn.seed(seed)
    parts = []
    for a, b in zip(layers, layers[1:]):
        parts += [xn.nn.Affine(a, b), xn.nn.ReLU()]
    return xn.nn.Sequential(*parts[:-1])


def _train_step(model, opt, x, t, loss=None):
    """One training step of ``model`` on (x, t) with softmax cross-entropy, as a callable."""
    loss = loss or xn.nn.SoftmaxCrossEntropy()

    def step():
        loss(model.forward(x), t)
        model.backward(loss.backward())
        opt.step()
    return step


def _xpnet_step(device, layers, batch, optimizer="SGD"):
    with xn.use_device(device):
        model = mlp(layers)
        opt = getattr(xn.optim, optimizer)(model, lr=0.1 if optimizer == "SGD" else 0.001)
        x, t = _batch(device, batch)
    return _train_step(model, opt, x, t)


def _blas_threads():
    try:
        from threadpoolctl import threadpool_info
        return next(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    except (ImportError, StopIteration):
        return 1


def _torch_step(device, layers, batch, graph=False):
    if device.kind == "sim":
        pytest.skip("sim is a correctness device; PyTorch has no counterpart")
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (reference column only)")
    if device.kind == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("torch: this PyTorch build has no CUDA")
        where = torch.device(f"cuda:{device.index}")
    else:
        torch.set_num_threads(_blas_threads())  # the same thread count as NumPy's BLAS
        where = torch.device("cpu")
    torch.manual_seed(0)
    parts = []
    for a, b in zip(layers, layers[1:]):
        parts += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*parts[:-1]).to(where)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, layers[0], device=where)
    t = torch.randint(0, 10, (batch,), device=where)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), t).backward()
        opt.step()
    if not graph:
        return step
    if device.kind != "cuda":
        pytest.skip("torch records CUDA graphs on CUDA devices only")
    return torch_graph(torch, step, lambda: opt.zero_grad(set_to_none=True),
                       lambda: (loss_fn(model(x), t).backward(), opt.step()))


def torch_graph(torch, step, reset, body):
    """PyTorch's documented whole-network capture: ``step`` three times on a side stream
    to warm up, ``reset`` (the gradients), then ``body`` recorded; returns the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    recorded = torch.cuda.CUDAGraph()
    reset()
    with torch.cuda.graph(recorded):
        body()

    def replay():
        recorded.replay()
    # The graph reads and writes the tensors that step and body hold (model, optimizer,
    # batch) by address: they must live as long as the replay, or PyTorch's allocator
    # hands their memory to the next tensor and the replay reads garbage labels.
    replay.keep = (step, reset, body)
    return replay


@sizes(quick=[1, 32, 100, 1024], full=[1, 8, 32, 100, 256, 1024, 4096])
def test_mlp_step(timed, speed_device, size, kernels):
    """The TF2 article's MLP (784-100-50-10, SGD): one training step."""
    timed("MLP step 784-100-50-10", _xpnet_step(speed_device, MLP, size), size, flop=_flop(MLP, size))


@sizes(quick=[32, 100, 256], full=[32, 100, 256])
@impls("xpnet", "xpnet-graph", "numpy-floor", "torch", "torch-graph")
def test_mlp_step_against_references(timed, speed_device, size, impl, kernels):
    """Issue 7: xpnet vs the hand-tuned NumPy floor vs PyTorch eager, same net, same batch."""
    step = _reference(impl, speed_device, MLP, size)
    timed("MLP step vs references", step, size, flop=_flop(MLP, size), reference=impl)


@sizes(quick=[256], full=[256, 1024])
@impls("xpnet", "xpnet-graph", "numpy-floor", "torch", "torch-graph")
def test_large_mlp_step(timed, speed_device, size, impl, kernels):
    """784-1024-1024-10 with SGD: compute-bound where the small MLP is overhead-bound."""
    step = _reference(impl, speed_device, LARGE, size)
    timed("MLP step 784-1024-1024-10", step, size, flop=_flop(LARGE, size), reference=impl)


def _reference(impl, device, layers, batch):
    if impl == "xpnet":
        return _xpnet_step(device, layers, batch)
    if impl == "xpnet-graph":  # issue 8: the same step recorded once, replayed as one launch
        _, replay = device.backend.capture(_xpnet_step(device, layers, batch))
        if replay is None:
            pytest.skip(f"{device.name} does not record CUDA graphs")
        return replay
    if impl in ("torch", "torch-graph"):
        return _torch_step(device, layers, batch, graph=impl == "torch-graph")
    if device.kind != "cpu":
        pytest.skip("the NumPy floor runs on the CPU only")
    floor = FloorMLP(layers, batch)
    x, t = _batch(device, batch)
    return lambda: floor.step(x, t, 0.1)


@sizes(quick=[32], full=[32, 100, 256])
def test_cnn_step(timed, speed_device, size, kernels):
    """The book's SimpleConvNet (conv 30x5x5, pool, 100, 10) with Adam: one training step."""
    with xn.use_device(speed_device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Conv2D(1, 30, 5), xn.nn.ReLU(), xn.nn.MaxPool2D(2),
                                 xn.nn.Affine(4320, 100), xn.nn.ReLU(), xn.nn.Affine(100, 10))
        opt = xn.optim.Adam(model)
        x, t = _batch(speed_device, size, shape=(1, 28, 28))
    flop = 6 * size * (24 * 24 * 30 * 25 + 4320 * 100 + 100 * 10)
    timed("CNN step", _train_step(model, opt, x, t), size, flop=flop)


@sizes(quick=[100], full=[32, 100, 1024])
@impls("backward", "autodiff")
def test_autodiff_overhead(timed, speed_device, size, impl, kernels):
    """Issue 5: the MLP's gradients by value_and_grad against the layers' backward."""
    from xpnet import autodiff as ad
    if impl == "backward":
        timed("MLP gradients: autodiff vs backward", _xpnet_step(speed_device, MLP, size), size,
              reference=impl)
        return
    with xn.use_device(speed_device):
        rng = numpy.random.default_rng(0)
        params = xn.to_device({f"W{i}": (rng.standard_normal((a, b)) * numpy.sqrt(2 / a)).astype(numpy.float32)
                               for i, (a, b) in enumerate(zip(MLP, MLP[1:]))})
        params.update(xn.to_device({f"b{i}": numpy.zeros(b, dtype=numpy.float32) for i, b in enumerate(MLP[1:])}))
        x, t = _batch(speed_device, size)

    def loss(p):
        h = ad.relu(x @ p["W0"] + p["b0"])
        h = ad.relu(h @ p["W1"] + p["b1"])
        return ad.softmax_cross_entropy(h @ p["W2"] + p["b2"], t)
    vg = xn.value_and_grad(loss)

    def step():
        with xn.use_device(speed_device):  # host numbers in f go to the current device
            _, grads = vg(params)
        for k in params:
            params[k] -= 0.1 * grads[k]
    timed("MLP gradients: autodiff vs backward", step, size, reference=impl)
