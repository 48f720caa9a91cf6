"""Property e: cpu equals sim bit for bit (every layer sample, float32 and float64, forward
and backward; a whole training run), and a recorded training step equals the step-by-step one."""
import numpy
import pytest

import xpnet as xn

from .registry import OPTIMIZERS, layer_samples
from .support import host_input

SAMPLES = {id: s for id, e, s in layer_samples()}


def _run(sample, dtype, device):
    with xn.use_device(device):
        layer = sample.make(dtype)
        if sample.eval_mode:
            layer.eval()
        x = xn.to_device(host_input(sample.shape).astype(dtype), device)
        y = layer(x)
        dx = layer.backward(xn.to_device(host_input(tuple(y.shape), 1).astype(dtype), device))
        return xn.to_host({"y": y, "dx": dx, **{f"grad/{k}": v for k, v in layer.grads().items()},
                           **{f"buffer/{k}": v for k, v in layer.buffers().items()}})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_layer_on_cpu_equals_sim_bit_for_bit(sample, dtype):
    cpu, sim = _run(SAMPLES[sample], dtype, "cpu"), _run(SAMPLES[sample], dtype, "sim")
    assert cpu.keys() == sim.keys()
    for k in cpu:
        numpy.testing.assert_array_equal(cpu[k], sim[k], err_msg=f"{sample} {dtype}: {k} differs")


def _data(n=50):
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((n, 6)).astype(numpy.float32), rng.integers(0, 3, n)


def _model(seed=0):
    return xn.nn.Sequential(xn.nn.Affine(6, 8, seed=seed), xn.nn.BatchNorm(8), xn.nn.ReLU(),
                            xn.nn.Dropout(0.3, seed=seed + 1), xn.nn.Affine(8, 3, seed=seed + 2))


def _train(device, make_opt, graph, epochs=2):
    with xn.use_device(device):
        model = _model()
        opt = make_opt(model)
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, _data(), epochs=epochs, batch_size=16, seed=0,
               graph=graph, progress=False)
        return xn.to_host({**model.params(), **model.buffers()})


OPT = {e.name: e.make for e in OPTIMIZERS}


@pytest.mark.parametrize("name", list(OPT))
def test_training_on_cpu_equals_sim_bit_for_bit(name):
    cpu, sim = _train("cpu", OPT[name], graph=False), _train("sim", OPT[name], graph=False)
    for k in cpu:
        numpy.testing.assert_array_equal(cpu[k], sim[k], err_msg=f"{name}: {k} differs")


@pytest.mark.parametrize("name", list(OPT))
def test_recorded_training_equals_step_by_step(name):
    recorded, eager = _train("sim", OPT[name], graph=True), _train("sim", OPT[name], graph=False)
    for k in recorded:
        numpy.testing.assert_array_equal(recorded[k], eager[k], err_msg=f"{name}: {k} differs")
