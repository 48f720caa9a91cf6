"""Issue 17, item 1: every xpnet routine runs under its own device. sim has a current
device as CuPy has (sim:0 unless one is entered), and refuses work on another device's
arrays, as CuPy does (or, for cuBLAS, silently uses the wrong device's handle); so a
missing scope fails here, on sim:1, in CI."""
import numpy
import pytest

import xpnet as xn

SIM1 = xn.Device("sim:1")


def test_sim_refuses_work_on_a_device_that_is_not_current():
    a = xn.to_device(numpy.ones(3), SIM1)  # copies are scoped by the backend itself
    for op in (lambda: a + 1, lambda: a.sum(), lambda: a[[0, 1]], lambda: SIM1.xp.zeros(3)):
        with pytest.raises(ValueError, match=r"sim:1 while sim:0 is the current device"):
            op()
    with xn.use_device(SIM1):
        assert float(xn.to_host((a + 1).sum())) == 6


def _data(rng):
    return rng.random((64, 1, 8, 8), dtype=numpy.float32), rng.integers(0, 3, 64)


def test_a_model_on_sim1_does_everything_under_its_own_device(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "sim:1")  # the default device, but not entered: sim:0 stays current
    rng = numpy.random.default_rng(0)
    x, t = _data(rng)
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Conv2D(1, 4, 3), xn.nn.ReLU(), xn.nn.MaxPool2D(2), xn.nn.Flatten(),
                             xn.nn.Affine(36, 16), xn.nn.BatchNorm(16), xn.nn.Dropout(0.1), xn.nn.Tanh(),
                             xn.nn.Affine(16, 3))
    assert model.device == SIM1
    opt = xn.optim.AdamW(model, lr=1e-2)
    schedule = xn.optim.schedules.Cosine(opt, epochs=3)
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=3, batch_size=16,
                     validation=(x, t), schedule=schedule)
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    assert xn.predict(model, x).shape == (64, 3)
    xn.evaluate(model, (x, t))
    xd, td = xn.to_device((x[:8], t[:8]), SIM1)
    loss = xn.nn.SoftmaxCrossEntropy()
    loss(model(xd), td)
    model.backward(loss.backward())
    opt.step()
    opt.zero_grad()
    opt.lr, opt.t = 1e-3, 7
    assert opt.t == 7
    xn.save(model, tmp_path / "m.npz", optimizer=opt)
    model.set_params({"4.b": numpy.ones(16)})
    xn.load(model, tmp_path / "m.npz", optimizer=opt)
    g = xn.grad(lambda w: xn.functional.tanh(w * 2).sum())(xn.to_device(numpy.ones(3), SIM1))
    assert xn.device_of(g) == SIM1
    assert xn.asarray([1, 2], dtype="float32", device=SIM1).dtype == numpy.float32
    on_sim0 = xn.to_device(numpy.arange(3), "sim:0")
    assert xn.asarray(on_sim0, dtype="float32", device=SIM1).dtype == numpy.float32
    xn.evaluate(model, xn.to_device((x, t), SIM1))  # labels on the device: checked under it
    model.to("sim:0")  # and back: the optimizer's state follows, under each device
    opt.step()
