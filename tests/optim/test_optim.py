"""One step of each optimizer against its formula evaluated by hand with NumPy on the host."""
import math

import numpy
import pytest

import xpnet as xn


def _model(device):
    with xn.use_device(device):  # not the process default, which XPNET_DEVICE may set
        layer = xn.nn.Affine(3, 2, seed=0, dtype="float64")
    layer.grads()["W"][...] = xn.to_device(numpy.arange(6.0).reshape(3, 2) / 10 - 0.2, device)
    layer.grads()["b"][...] = xn.to_device(numpy.array([0.5, -1.0]), device)
    return layer


def _expected(name, p, g, steps, wd=0.0):
    p = p.copy()
    m = numpy.zeros_like(p)
    v = numpy.zeros_like(p)
    for t in range(1, steps + 1):
        gg = g + wd * p
        if name == "SGD":
            p -= 0.1 * gg
        elif name == "Momentum":
            m = 0.9 * m - 0.1 * gg
            p += m
        elif name == "AdaGrad":
            v += gg * gg
            p -= 0.1 * gg / (numpy.sqrt(v) + 1e-7)
        elif name == "RMSProp":
            v = 0.99 * v + 0.01 * gg * gg
            p -= 0.1 * gg / (numpy.sqrt(v) + 1e-7)
        elif name in ("Adam", "AdamW"):
            if name == "AdamW":  # decoupled: the decay shrinks p, the gradient stays g
                gg = g
                p *= 1 - 0.1 * wd
            lr_t = 0.1 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            m += 0.1 * (gg - m)
            v += 0.001 * (gg * gg - v)
            p -= lr_t * m / (numpy.sqrt(v) + 1e-7)
    return p


@pytest.mark.parametrize("name", ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam", "AdamW"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_optimizer_steps_follow_their_formula(name, wd, device):
    model = _model(device)
    # to_host returns cpu arrays themselves (no copy), and step() updates them in place
    start = {k: numpy.array(v) for k, v in xn.to_host(model.params()).items()}
    grads = {k: numpy.array(v) for k, v in xn.to_host(model.grads()).items()}
    opt = getattr(xn.optim, name)(model, lr=0.1, weight_decay=wd)
    for _ in range(3):
        opt.step()
    for key in ("W", "b"):
        numpy.testing.assert_allclose(xn.to_host(model.params()[key]),
                                      _expected(name, start[key], grads[key], 3, wd), rtol=1e-12)


def test_optimizer_state_follows_the_model_to_another_device():
    with xn.use_device("cpu"):
        model = _model("cpu")
    opt = xn.optim.Adam(model, lr=0.1)
    opt.step()
    model.to("sim")
    before = xn.transfer_stats()
    opt.step()
    assert all(xn.device_of(a) == xn.Device("sim") for s in opt.state.values() for a in s.values())
    assert (xn.transfer_stats() - before).h2d_count == 4  # m and v of W and b, once
    opt.step()
    assert (xn.transfer_stats() - before).h2d_count == 4  # and never again


def test_step_copies_nothing_between_host_and_device():
    with xn.use_device("sim"):
        model = _model("sim")
        opt = xn.optim.Adam(model, weight_decay=0.1)
        opt.step()
        before = xn.transfer_stats()
        opt.step()
        assert (xn.transfer_stats() - before).count == 0


def test_zero_grad(device):
    model = _model(device)
    xn.optim.SGD(model, lr=0.1).zero_grad()
    assert all(float(xn.to_host(abs(g).sum())) == 0 for g in model.grads().values())


@pytest.mark.parametrize("kwargs", [{"lr": 0}, {"lr": -1}, {"lr": 0.1, "weight_decay": -1}])
def test_bad_hyperparameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="SGD"):
        xn.optim.SGD(_model("cpu"), **kwargs)


def test_two_optimizers_on_one_model_both_update_the_live_parameters(device):
    """Each optimizer lays the parameters out in its own flat buffer; taking turns, each
    notices the other did so and takes the current values over, so no step is lost."""
    model = _model(device)
    start = {k: numpy.array(v) for k, v in xn.to_host(model.params()).items()}
    grads = {k: numpy.array(v) for k, v in xn.to_host(model.grads()).items()}
    first, second = xn.optim.SGD(model, lr=0.1), xn.optim.SGD(model, lr=0.1)
    for _ in range(2):
        first.step()
        second.step()
    for key in ("W", "b"):
        numpy.testing.assert_allclose(xn.to_host(model.params()[key]), _expected("SGD", start[key], grads[key], 4),
                                      rtol=1e-12)


def test_parameters_stay_live_after_the_first_step(device):
    """After the optimizer lays them out flat, params() and grads() are still what the
    layer computes with and what the optimizer updates."""
    model = _model(device)
    opt = xn.optim.SGD(model, lr=0.1)
    opt.step()
    W, gW = model.params()["W"], model.grads()["W"]
    W[...] = 0
    assert float(xn.to_host(abs(model(xn.to_device(numpy.ones((1, 3)), device)) - model.params()["b"]).sum())) == 0
    gW[...] = 1
    opt.step()
    numpy.testing.assert_allclose(xn.to_host(W), -0.1 * numpy.ones((3, 2)), rtol=1e-12)


def test_schedules_set_the_rate_each_epoch(device):
    opt = xn.optim.SGD(_model(device), lr=0.1)
    step = xn.optim.schedules.StepDecay(opt, step_size=2, gamma=0.5)
    assert [step.step() for _ in range(4)] == [0.1, 0.05, 0.05, 0.025]
    opt = xn.optim.Adam(_model(device), lr=0.1)
    cosine = xn.optim.schedules.Cosine(opt, epochs=4, min_lr=0.02)
    rates = [cosine.step() for _ in range(5)]
    assert rates[1] == pytest.approx(0.06) and rates[3] == rates[4] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="min_lr"):
        xn.optim.schedules.Cosine(opt, epochs=4, min_lr=1.0)


def test_a_schedule_changes_a_recorded_step_without_recording_it_again(mnist_small, monkeypatch):
    """The rate is read on the device, so a recorded step (on sim) follows the schedule and
    trains exactly like the step-by-step run."""
    (x, t), _ = mnist_small
    runs, captures = [], []
    real = type(xn.Device("sim").backend).capture
    monkeypatch.setattr(type(xn.Device("sim").backend), "capture",
                        lambda self, fn: captures.append(1) or real(self, fn))
    with xn.use_device("sim"):
        for graph in (True, False):
            xn.seed(0)
            model = xn.nn.Sequential(xn.nn.Affine(784, 32), xn.nn.ReLU(), xn.nn.Affine(32, 10))
            opt = xn.optim.Momentum(model, lr=0.1)
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:600], t[:600]), epochs=3, batch_size=100, seed=0,
                   graph=graph, schedule=xn.optim.schedules.StepDecay(opt, 1, gamma=0.1))
            runs.append(xn.to_host(model.params()))
            assert opt.lr == pytest.approx(1e-4)
    assert captures == [1]  # recorded once, for the one batch size, and never again
    for name in runs[1]:
        numpy.testing.assert_array_equal(runs[0][name], runs[1][name])
