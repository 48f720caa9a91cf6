"""Issue 26's last check: every model the CPU kernels were measured on (bench/compare.py's
four and the speedrun's CNN, at their real sizes) trains for two epochs with ``fit`` on
cpu, which runs the kernels where they are on, to the same bits as on sim, which runs the
portable routines: parameters, BatchNorm's running statistics and every step's loss.

The batches are sized so that the paths the kernels changed run: the input gradient of
DeepConvNet's 16-channel 28x28 stage goes in chunks of 4 images (``conv_chunk_bytes``), the
speedrun's unpadded second stage's is scattered by the col2im kernel
(``input_grad_scatter_ratio``), and each conv+ReLU+pool stage takes the grouped im2col
kernel.
"""
import runpy
from pathlib import Path

import numpy
import pytest

import xpnet as xn
from xpnet.backends.routines.conv import ConvRoutines

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CNN = runpy.run_path(str(EXAMPLES / "mnist_cnn.py"))["MODELS"]
SPEEDRUN_CNN = runpy.run_path(str(EXAMPLES / "mnist_speedrun.py"))["speedrun_cnn"]
N, BATCH, EPOCHS = 72, 24, 2


def _tf2_mlp():
    return xn.nn.Sequential(xn.nn.Affine(784, 100), xn.nn.ReLU(), xn.nn.Affine(100, 50), xn.nn.ReLU(),
                            xn.nn.Affine(50, 10))


def _regularised():
    parts = []
    for a, b in ((784, 256), (256, 256)):
        parts += [xn.nn.Affine(a, b), xn.nn.BatchNorm(b), xn.nn.ReLU(), xn.nn.Dropout(0.2)]
    return xn.nn.Sequential(*parts, xn.nn.Affine(256, 10))


def _speedrun(model):
    opt = xn.optim.Momentum(model, lr=0.3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xn.optim.schedules.OneCycle(opt, max_lr=0.3, total_steps=EPOCHS * N // BATCH, pct_start=0.25)
    return opt


# name: (model, optimizer, images as (1, 28, 28) or flat, the loss's label smoothing)
MODELS = {
    "tf2-mlp": (_tf2_mlp, lambda m: xn.optim.SGD(m, lr=0.1), False, 0.0),
    "regularised-mlp": (_regularised, lambda m: xn.optim.Adam(m, lr=1e-3), False, 0.0),
    "simple-convnet": (CNN["simple"][1], lambda m: xn.optim.Adam(m, lr=1e-3), True, 0.0),
    "deep-convnet": (CNN["deep"][1], lambda m: xn.optim.Adam(m, lr=1e-3), True, 0.0),
    "speedrun-cnn": (SPEEDRUN_CNN, _speedrun, True, 0.1),
}


def _train(device, name):
    build, make_opt, images, smoothing = MODELS[name]
    rng = numpy.random.default_rng(0)
    x = rng.random((N, 1, 28, 28) if images else (N, 784), dtype=numpy.float32)
    t = rng.integers(0, 10, N)
    with xn.use_device(device):
        xn.seed(0)
        model = build()
        history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(label_smoothing=smoothing), make_opt(model), (x, t),
                         epochs=EPOCHS, batch_size=BATCH, seed=0, progress=False)
        return history.step_loss, xn.to_host({**model.params(), **model.buffers()})


@pytest.mark.parametrize("name", MODELS)
def test_every_measured_model_trains_on_cpu_to_the_bits_it_trains_to_on_sim(name, monkeypatch):
    ways = []  # each stride-1 input gradient's way: True as a convolution, False by col2im's scatter
    choose = ConvRoutines._input_grad_by_convolution
    monkeypatch.setattr(ConvRoutines, "_input_grad_by_convolution",
                        lambda self, *a: (ways.append(choose(self, *a)), ways[-1])[1])
    (cpu_loss, cpu), (sim_loss, sim) = _train("cpu", name), _train("sim", name)
    assert set(ways) == {"deep-convnet": {True, False}, "speedrun-cnn": {False}}.get(name, set())
    assert len(cpu_loss) == EPOCHS * N // BATCH
    numpy.testing.assert_array_equal(numpy.asarray(cpu_loss), numpy.asarray(sim_loss))
    assert cpu.keys() == sim.keys()
    for key in cpu:
        assert cpu[key].dtype == sim[key].dtype
        assert numpy.array_equal(cpu[key].view(numpy.uint8), sim[key].view(numpy.uint8)), f"{name}: {key} differs"
