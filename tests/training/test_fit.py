import numpy
import pytest

import xpnet as xn


def _mlp(seed=0):
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Affine(784, 100), xn.nn.ReLU(), xn.nn.Affine(100, 50), xn.nn.ReLU(),
                            xn.nn.Affine(50, 10))


@pytest.mark.slow
def test_fit_learns_mnist_on_a_small_slice(device, mnist_small):
    train, test = mnist_small
    model = _mlp()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), train,
                     epochs=2, batch_size=32, validation=test, seed=0)
    assert history.epoch_loss[1] < history.epoch_loss[0] < 2.3  # chance is ln(10) = 2.30
    assert numpy.mean(history.step_loss[-20:]) < 0.5 * numpy.mean(history.step_loss[:20])
    assert history.val_accuracy[-1] > 0.85  # chance is 0.10
    result = xn.evaluate(model, test)
    assert result["accuracy"] == pytest.approx(history.val_accuracy[-1])
    assert len(history.step_loss) == 2 * 157 and len(history.epoch_seconds) == 2


def test_cpu_and_sim_train_to_bit_identical_parameters(mnist_small):
    train, _ = mnist_small
    params = []
    for dev in ("cpu", "sim"):
        with xn.use_device(dev):
            model = _mlp()
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), train,
                   epochs=1, batch_size=32, seed=3)
            params.append(xn.to_host(model.params()))
    for name in params[0]:
        assert numpy.array_equal(params[0][name], params[1][name]), name


def test_training_step_copies_nothing_between_host_and_device(mnist_small):
    (x, t), _ = mnist_small
    with xn.use_device("sim"):
        model = _mlp()
        loss_fn, opt = xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model)
        xb, tb = xn.to_device((x[:100], t[:100]))
        for _ in range(2):  # the first step allocates buffers and optimizer state
            before = xn.transfer_stats()
            loss_fn(model(xb), tb)
            model.backward(loss_fn.backward())
            opt.step()
        assert (xn.transfer_stats() - before).count == 0


def test_fit_copies_the_data_once_and_reads_losses_in_chunks(mnist_small):
    train, _ = mnist_small
    with xn.use_device("sim"):
        model = _mlp()
        before = xn.transfer_stats()
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), train,
               epochs=2, batch_size=100, seed=0)
        delta = xn.transfer_stats() - before
    assert delta.h2d_count == 2 + 2          # x and t once, one shuffle order per epoch
    assert delta.d2h_count <= 2 * (10 + 1)   # about ten loss reads and one count per epoch


def test_predict_batches_inference_in_eval_mode(device, mnist_small):
    _, (x, t) = mnist_small
    mlp = _mlp()
    model = xn.nn.Sequential(mlp[0], xn.nn.Dropout(0.5), *mlp.layers[1:])
    out = xn.predict(model, x[:250], batch_size=100)
    assert out.shape == (250, 10) and xn.device_of(out) == device and model.training
    with xn.use_device(device):
        model.eval()
        whole = model(xn.to_device(x[:250]))
    numpy.testing.assert_allclose(xn.to_host(out), xn.to_host(whole), rtol=1e-5, atol=1e-6)


def test_fit_stops_on_nan_loss_naming_epoch_and_step(device, mnist_small):
    (x, t), _ = mnist_small
    x = x[:300].copy()
    x[150] = 1e30  # NaN on the device (host data holding NaN is refused before the first step)
    model = _mlp()
    with pytest.raises(xn.TrainingError, match=r"epoch 1, step 4\b"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t[:300]),
               batch_size=50, shuffle=False, transform=_nan_at_mark)


def _nan_at_mark(xb, tb):
    """fit's transform: the host data holds a finite marker (fit refuses NaN in host data up
    front), which becomes NaN on the device, inside the step, so the loss turns NaN there."""
    return xn.device_of(xb).xp.where(xb == 1e30, numpy.nan, xb), tb


def test_fit_moves_the_model_to_the_requested_device(mnist_small):
    (x, t), _ = mnist_small
    with xn.use_device("cpu"):
        model = _mlp()
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x[:200], t[:200]),
           device="sim")
    assert model.device == xn.Device("sim")


def test_fit_regression_with_mse(device):
    x, t = xn.datasets.exp_regression(512, seed=0)
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(1, 16), xn.nn.LeakyReLU(0.2), xn.nn.Affine(16, 32),
                             xn.nn.LeakyReLU(0.2), xn.nn.Affine(32, 1))
    loss = xn.nn.MeanSquaredError()
    history = xn.fit(model, loss, xn.optim.Adam(model, lr=0.01), (x, t), epochs=30, batch_size=64, seed=0)
    assert history.epoch_accuracy[0] is None
    assert history.epoch_loss[-1] < 0.05 * history.epoch_loss[0]
    assert xn.evaluate(model, (x, t), loss_fn=loss)["accuracy"] is None


def test_bad_fit_arguments_are_refused(mnist_small):
    (x, t), _ = mnist_small
    model = _mlp()
    opt = xn.optim.SGD(model, lr=0.1)
    with pytest.raises(xn.ShapeError, match="100 samples but t has 99"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:100], t[:99]))
    with pytest.raises(ValueError, match="batch_size"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:100], t[:100]), batch_size=0)
    with pytest.raises(TypeError, match=r"pair \(x, t\)"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, x)


def test_history_plot_writes_a_png(tmp_path, mnist_small):
    pytest.importorskip("matplotlib", reason="plots need the plot extra")
    train, test = mnist_small
    model = _mlp()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1),
                     (train[0][:1000], train[1][:1000]), epochs=2, validation=test)
    path = history.plot(tmp_path / "curve.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_progress_bar_when_asked(capsys, mnist_small):
    (x, t), _ = mnist_small
    model = _mlp()
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x[:500], t[:500]),
           progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err


def _fit_recording(device, monkeypatch, model, opt, train, loss=None, **kwargs):
    """fit, and what each of its calls to the backend's capture gave back."""
    backend = device.backend
    real = type(backend).capture
    replays = []

    def spy(self, fn):
        result, replay = real(self, fn)
        replays.append(replay)
        return result, replay
    monkeypatch.setattr(type(backend), "capture", spy)
    history = xn.fit(model, loss or xn.nn.SoftmaxCrossEntropy(), opt, train, seed=5, **kwargs)
    return history, replays


def _batchnorm_net(seed=0):
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Affine(784, 64), xn.nn.BatchNorm(64), xn.nn.ReLU(), xn.nn.Affine(64, 10))


def _convnet(seed=0):
    """The book's SimpleConvNet."""
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Conv2D(1, 30, 5), xn.nn.ReLU(), xn.nn.MaxPool2D(2),
                            xn.nn.Affine(30 * 12 * 12, 100), xn.nn.ReLU(), xn.nn.Affine(100, 10))


def _deep_convnet(seed=0):
    """A small DeepConvNet (ch. 8): convolutions that need their input's gradient, one
    alone and two ending in a pooling stage, padding 1 and 2, and Dropout."""
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Conv2D(1, 4, 3, pad=1), xn.nn.ReLU(), xn.nn.Conv2D(4, 4, 3, pad=1), xn.nn.ReLU(),
                            xn.nn.MaxPool2D(2), xn.nn.Conv2D(4, 8, 3, pad=2), xn.nn.ReLU(), xn.nn.MaxPool2D(2),
                            xn.nn.Affine(8 * 8 * 8, 32), xn.nn.ReLU(), xn.nn.Dropout(0.5), xn.nn.Affine(32, 10))


def _regularised_net(seed=0):
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Affine(784, 64), xn.nn.BatchNorm(64), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                            xn.nn.Affine(64, 10))


def _regression_net(seed=0):
    xn.seed(seed)
    return xn.nn.Sequential(xn.nn.Affine(1, 16), xn.nn.LeakyReLU(0.2), xn.nn.Affine(16, 32),
                            xn.nn.LeakyReLU(0.2), xn.nn.Affine(32, 1))


# Issue 14's models: every one records on sim and CUDA and trains exactly as step by step.
RECORDED = {
    "mlp-sgd": (_mlp, lambda m: xn.optim.SGD(m, lr=0.1), None),
    "batchnorm-momentum": (_batchnorm_net, lambda m: xn.optim.Momentum(m, lr=0.05), None),
    "batchnorm-adam": (_batchnorm_net, lambda m: xn.optim.Adam(m, lr=1e-3), None),
    "batchnorm-adamw-decay": (_batchnorm_net, lambda m: xn.optim.AdamW(m, lr=1e-3, weight_decay=0.1), None),
    "rmsprop-decay": (_mlp, lambda m: xn.optim.RMSProp(m, lr=1e-3, weight_decay=1e-3), None),
    "convnet-adam": (_convnet, lambda m: xn.optim.Adam(m, lr=1e-3), "images"),
    "deep-convnet-adam": (_deep_convnet, lambda m: xn.optim.Adam(m, lr=1e-3), "images"),
    "regression-adam": (_regression_net, lambda m: xn.optim.Adam(m, lr=0.01), "regression"),
    "dropout-batchnorm-adam": (lambda: _regularised_net(), lambda m: xn.optim.Adam(m, lr=1e-3), None),
}


def _recorded_data(kind, mnist_small):
    if kind == "regression":
        x, t = xn.datasets.exp_regression(1000, seed=0)
        return (x, t), None, xn.nn.MeanSquaredError()
    (x, t), test = mnist_small
    if kind == "images":
        return (x[:1000].reshape(-1, 1, 28, 28), t[:1000]), None, None
    return (x[:1000], t[:1000]), test, None


@pytest.mark.slow
@pytest.mark.parametrize("case", RECORDED)
def test_a_recorded_step_trains_exactly_like_the_step_by_step_run(device, mnist_small, monkeypatch, case):
    # 1000 samples in batches of 96: ten full batches and a last one of 40, two batch
    # sizes to record; validation between epochs runs batches of another shape through
    # the same layers, which must not disturb the recorded steps.
    build, make_opt, kind = RECORDED[case]
    train, test, loss = _recorded_data(kind, mnist_small)
    runs = []
    for graph in (True, False):
        model = build()
        opt = make_opt(model)
        history, replays = _fit_recording(device, monkeypatch, model, opt, train, loss=loss, epochs=2,
                                          batch_size=96, validation=test, graph=graph)
        runs.append((history, xn.to_host({**model.params(), **model.buffers()}), opt.t, replays))
    (h1, p1, t1, replays), (h0, p0, t0, none) = runs  # params and, for BatchNorm, running stats
    assert none == []  # graph=False records nothing
    if device.kind == "cpu":
        assert replays == []  # the CPU runs the step as it is: nothing to record
    else:
        assert len(replays) == 2 and all(r is not None for r in replays), "the step should record"
    if device.kind == "sim":  # recorded and replayed: every kernel on the tape, none left out
        assert all(r.kernels > 20 for r in replays)
    assert t1 == t0 == 2 * 11
    assert h1.epoch_accuracy == h0.epoch_accuracy and h1.val_accuracy == h0.val_accuracy
    exact = device.kind != "cuda"  # sim replays the very NumPy calls: bit for bit
    compare = numpy.testing.assert_array_equal if exact else \
        lambda a, b, err_msg="": numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=err_msg)
    compare(h1.step_loss, h0.step_loss)
    for name in p0:
        compare(p1[name], p0[name], err_msg=name)
    assert h1.epoch_loss[-1] < h1.epoch_loss[0]


def test_a_seeded_run_with_dropout_is_reproducible(device, mnist_small):
    (x, t), _ = mnist_small
    runs = []
    for _ in range(2):
        model = _regularised_net(seed=3)  # xn.seed(3): weights and Dropout's generator
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model), (x[:500], t[:500]), batch_size=100,
               seed=0)
        runs.append(xn.to_host(model.params()))
    for name in runs[0]:
        numpy.testing.assert_array_equal(runs[0][name], runs[1][name])


class _PythonRateSGD(xn.optim.SGD):
    """A deliberately wrong optimizer: a per-step rate computed in Python (lr / t)."""

    def _update(self, group, g):
        group.backend.sgd_update(group.p, g, self.lr / (1 + self._t), group.scratch)
        self._t += 1


def test_a_per_step_python_value_in_a_recorded_step_shows_on_sim(mnist_small):
    """A Python value baked into a recorded step is replayed unchanged, so the run differs
    from the step-by-step one: on sim exactly as it would on CUDA, where CI can see it."""
    (x, t), _ = mnist_small
    runs = []
    with xn.use_device("sim"):
        for graph in (True, False):
            model = _mlp()
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), _PythonRateSGD(model, lr=0.1), (x[:1000], t[:1000]),
                   batch_size=100, seed=0, graph=graph)
            runs.append(xn.to_host(model.params())["0.W"])
    assert not numpy.array_equal(runs[0], runs[1])


def test_a_host_read_inside_a_recorded_step_is_refused_on_sim():
    backend = xn.Device("sim").backend
    with xn.use_device("sim"):
        x = xn.xp.ones(3)
        reads = [(lambda: float(x.sum()), "reading a device value"), (lambda: xn.to_host(x), "copy to the host"),
                 (lambda: xn.to_device(numpy.ones(3)), "copy from the host"), (lambda: print(x), "printing"),
                 (lambda: bool((x > 0).all()), "reading a device value")]
        for read, what in reads:
            step = backend.record(lambda: (read(), x * 2)[1])  # noqa: B023
            step()  # the first call runs eagerly, as CUDA's warm-up does
            with pytest.raises(xn.CaptureError, match=what):
                step()
