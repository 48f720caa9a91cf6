"""Issue 28's features: per-step learning-rate schedules computed on the device, label
smoothing, Nesterov momentum, on-device augmentation (against PyTorch where it has the same
thing), and the speedrun example on a slice."""
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

torch = pytest.importorskip("torch")  # the oracle (backends/oracles.txt)

S = xn.optim.schedules
REPO = Path(__file__).resolve().parents[2]


# -- per-step schedules ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(), dict(anneal_strategy="linear"), dict(three_phase=True, pct_start=0.25),
                                    dict(div_factor=10.0, final_div_factor=100.0, pct_start=0.4)])
def test_one_cycle_rates_equal_torch_one_cycle_lr_at_every_step(kwargs, device):
    total, max_lr = 23, 0.4
    with xn.use_device(device):
        model = xn.nn.Affine(2, 2, dtype="float64", seed=0)
    opt = xn.optim.SGD(model, lr=1.0)
    ours = {("anneal" if k == "anneal_strategy" else k): v for k, v in kwargs.items()}
    S.OneCycle(opt, max_lr=max_lr, total_steps=total, **ours)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    topt = torch.optim.SGD([p], lr=1.0)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=max_lr, total_steps=total, cycle_momentum=False,
                                                  **kwargs)
    for k in range(total):
        expected = topt.param_groups[0]["lr"]
        opt.step()  # the rate of step k, computed on the device from the step count
        assert opt.lr == pytest.approx(expected, rel=1e-12), f"step {k}"
        topt.step()
        tsched.step()


def test_warmup_cosine_and_linear_follow_their_closed_forms_in_float32(device):
    for cls, decay in ((S.WarmupCosine, lambda x: 0.5 * (1 + numpy.cos(numpy.pi * x))),
                       (S.WarmupLinear, lambda x: 1 - x)):
        with xn.use_device(device):
            model = xn.nn.Affine(2, 2, seed=0)  # float32: the rate is computed in float64, then cast
        opt = xn.optim.Adam(model, lr=0.02)
        schedule = cls(opt, warmup_steps=4, total_steps=20, min_lr=0.002)
        for k in range(24):
            opt.step()
            x = (min(k, 20) - 4) / 16
            expected = 0.02 * k / 4 if k < 4 else 0.002 + 0.018 * decay(x)
            assert opt.lr == pytest.approx(expected, rel=1e-6, abs=1e-9), f"{cls.__name__} step {k}"
            assert opt.lr == numpy.float32(schedule.rate(k)), "the device's float32 rate is the host formula's"


def _cnn():
    return xn.nn.Sequential(xn.nn.Conv2D(1, 4, 3, pad=1, seed=1), xn.nn.BatchNorm(4), xn.nn.ReLU(),
                            xn.nn.MaxPool2D(2), xn.nn.Affine(4 * 4 * 4, 3, seed=2))


def _images(n=40):
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((n, 1, 8, 8)).astype("float32"), rng.integers(0, 3, n)


def _speedrun_fit(device, graph, seed=0, epochs=2):
    """Everything the speedrun uses at once: a per-step schedule, Nesterov momentum, label
    smoothing and the augmentation, through fit."""
    xn.seed(seed)
    with xn.use_device(device):
        model = _cnn()
        opt = xn.optim.Momentum(model, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        S.OneCycle(opt, max_lr=0.2, total_steps=epochs * 4)
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(label_smoothing=0.1), opt, _images(), epochs=epochs,
               batch_size=10, progress=False, graph=graph, transform=xn.augment.RandomTranslate(1))
    return xn.to_host({**model.params(), **model.buffers()}), opt


def test_recorded_fit_with_schedule_smoothing_nesterov_and_augmentation_equals_step_by_step_on_sim():
    eager, _ = _speedrun_fit("sim", graph=False)
    xn.reset_transfer_stats()
    recorded, opt = _speedrun_fit("sim", graph=True)
    for k in eager:
        numpy.testing.assert_array_equal(eager[k], recorded[k], err_msg=k)
    assert opt.lr == pytest.approx(opt.step_schedule.rate(7), rel=1e-6)  # it ran to the end of the schedule


def test_speedrun_parts_train_the_same_on_cpu_and_sim():
    cpu, _ = _speedrun_fit("cpu", graph=True)
    sim, _ = _speedrun_fit("sim", graph=True)
    for k in cpu:
        numpy.testing.assert_array_equal(cpu[k], sim[k], err_msg=k)


def test_step_schedule_state_round_trips_and_refuses_a_record_that_does_not_fit(tmp_path):
    model = xn.nn.Affine(2, 2)
    opt = xn.optim.SGD(model, lr=0.1)
    schedule = S.WarmupCosine(opt, warmup_steps=2, total_steps=10, min_lr=0.01)
    assert schedule.state_dict() == {"base_lr": 0.1}
    xn.save(model, tmp_path / "c.npz", optimizer=opt, schedule=schedule)
    opt2 = xn.optim.SGD(model, lr=0.5)
    schedule2 = S.WarmupCosine(opt2, warmup_steps=2, total_steps=10, min_lr=0.01)
    xn.load(model, tmp_path / "c.npz", optimizer=opt2, schedule=schedule2)
    assert schedule2.base_lr == 0.1 and schedule2.rate(2) == 0.1
    with pytest.raises(ValueError, match="base_lr"):
        schedule2.load_state_dict({"epoch": 3, "base_lr": 0.1})
    with pytest.raises(ValueError, match="min_lr"):
        schedule2.load_state_dict({"base_lr": 0.001})  # below min_lr: the decay would climb
    assert schedule2.base_lr == 0.1


def test_a_second_step_schedule_is_refused_until_the_first_is_detached():
    opt = xn.optim.SGD(xn.nn.Affine(2, 2), lr=0.1)
    first = S.OneCycle(opt, max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="already follows OneCycle.*detach"):
        S.WarmupLinear(opt, warmup_steps=1, total_steps=5)
    first.detach()
    assert opt.step_schedule is None
    S.WarmupLinear(opt, warmup_steps=1, total_steps=5)


def test_fit_accepts_a_step_schedule_as_schedule_and_leaves_its_rates_alone():
    x, t = _images()
    rates = []
    for given in (False, True):
        model = _cnn()
        opt = xn.optim.SGD(model, lr=0.1)
        schedule = S.OneCycle(opt, max_lr=0.3, total_steps=8)
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=2, batch_size=10, progress=False,
               schedule=schedule if given else None)
        rates.append(opt.lr)
    assert rates[0] == rates[1] == pytest.approx(schedule.rate(7), rel=1e-6)


# -- label smoothing ---------------------------------------------------------------------------------
def _logits_and_labels(kind, n=6, c=5):
    rng = numpy.random.default_rng(1)
    z = rng.standard_normal((n, c)) * 3
    if kind == "index":
        return z, rng.integers(0, c, n)
    soft = rng.random((n, c))
    return z, soft / soft.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["index", "soft"])
@pytest.mark.parametrize("e", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_equals_torch_cross_entropy_loss_and_gradient(kind, e, device):
    z, t = _logits_and_labels(kind)
    zt = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(zt, torch.tensor(t), label_smoothing=e)
    expected.backward()
    loss_fn = xn.nn.SoftmaxCrossEntropy(label_smoothing=e)
    zd, td = xn.to_device(z, device), xn.to_device(t, device)
    loss = loss_fn(zd, td)
    assert float(xn.to_host(loss)) == pytest.approx(expected.item(), rel=1e-12)
    numpy.testing.assert_allclose(xn.to_host(loss_fn.backward()), zt.grad.numpy(), rtol=1e-10, atol=1e-15)
    g = xn.grad(lambda v: xn.functional.softmax_cross_entropy(v, td, label_smoothing=e))(zd)
    numpy.testing.assert_allclose(xn.to_host(g), zt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_label_smoothing_equals_its_formula_and_its_second_derivative_is_traced(device):
    z, t = _logits_and_labels("index")
    e, c = 0.2, z.shape[1]
    logp = z - z.max(axis=1, keepdims=True)
    logp -= numpy.log(numpy.exp(logp).sum(axis=1, keepdims=True))
    formula = -((1 - e) * logp[numpy.arange(len(z)), t] + e / c * logp.sum(axis=1)).mean()
    zd, td = xn.to_device(z, device), xn.to_device(t, device)
    assert float(xn.to_host(xn.functional.softmax_cross_entropy(zd, td, label_smoothing=e))) == \
        pytest.approx(formula, rel=1e-12)
    # d/dz of sum(grad * w) through the recorded backward, against central differences of it
    w = xn.to_device(numpy.random.default_rng(2).standard_normal(z.shape), device)

    def inner(v):
        return (xn.grad(lambda u: xn.functional.softmax_cross_entropy(u, td, label_smoothing=e))(v) * w).sum()
    hvp = xn.to_host(xn.grad(inner)(zd))
    h, numeric = 1e-5, numpy.zeros_like(z)
    for i in numpy.ndindex(*z.shape):
        up, down = z.copy(), z.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (float(xn.to_host(inner(xn.to_device(up, device))))
                      - float(xn.to_host(inner(xn.to_device(down, device))))) / (2 * h)
    numpy.testing.assert_allclose(hvp, numeric, rtol=1e-5, atol=1e-8)


def test_label_smoothing_keeps_a_zero_row_masked(device):
    z, t = _logits_and_labels("soft")
    t[2] = 0.0
    loss_fn = xn.nn.SoftmaxCrossEntropy(label_smoothing=0.3)
    loss_fn(xn.to_device(z, device), xn.to_device(t, device))
    assert numpy.all(xn.to_host(loss_fn.backward())[2] == 0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1"])
def test_label_smoothing_out_of_range_is_refused_by_name(bad):
    with pytest.raises((ValueError, TypeError), match="label_smoothing"):
        xn.nn.SoftmaxCrossEntropy(label_smoothing=bad)
    with pytest.raises((ValueError, TypeError), match="label_smoothing"):
        xn.functional.softmax_cross_entropy(numpy.zeros((2, 3)), numpy.array([0, 1]), label_smoothing=bad)


def test_label_smoothing_zero_is_bit_for_bit_the_plain_loss(device):
    z, t = _logits_and_labels("index")
    zd, td = xn.to_device(z.astype("float32"), device), xn.to_device(t, device)
    plain, smoothed = xn.nn.SoftmaxCrossEntropy(), xn.nn.SoftmaxCrossEntropy(label_smoothing=0.0)
    assert xn.to_host(plain(zd, td)) == xn.to_host(smoothed(zd, td))
    numpy.testing.assert_array_equal(xn.to_host(plain.backward()), xn.to_host(smoothed.backward()))


# -- Nesterov ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_nesterov_momentum_takes_torch_sgd_nesterov_steps(weight_decay, device):
    with xn.use_device(device):
        model = xn.nn.Affine(4, 3, dtype="float64", seed=0)
    opt = xn.optim.Momentum(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    params = {k: torch.nn.Parameter(torch.tensor(xn.to_host(v).copy())) for k, v in model.params().items()}
    topt = torch.optim.SGD(list(params.values()), lr=0.05, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    rng = numpy.random.default_rng(3)
    for step in range(6):
        for k, p in params.items():
            g = rng.standard_normal(tuple(p.shape))
            model.grads()[k][...] = xn.to_device(g, device)
            p.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for k, p in params.items():
            numpy.testing.assert_allclose(xn.to_host(model.params()[k]), p.detach().numpy(), rtol=1e-12,
                                          atol=1e-14, err_msg=f"step {step}, {k}")


def test_nesterov_differs_from_plain_momentum():
    states = []
    for nesterov in (False, True):
        model = xn.nn.Affine(2, 2, dtype="float64", seed=0)
        opt = xn.optim.Momentum(model, lr=0.1, nesterov=nesterov)
        for _ in range(2):
            for g in model.grads().values():
                g[...] = 1.0
            opt.step()
        states.append(xn.to_host(model.params()["W"]).copy())
    assert not numpy.array_equal(*states)


# -- augmentation -------------------------------------------------------------------------------------
def test_random_translate_equals_a_host_shift_of_each_image_and_uses_every_shift(device):
    x = numpy.random.default_rng(4).standard_normal((400, 1, 5, 5)).astype("float32")
    with xn.use_device(device):
        out = xn.to_host(xn.augment.RandomTranslate(2, seed=9)(xn.to_device(x, device), None)[0])
    padded = numpy.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    seen = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if numpy.array_equal(padded[i, :, dy:dy + 5, dx:dx + 5], out[i])]
        assert len(hits) == 1, f"image {i}: not one shift of the input ({hits})"
        seen.add(hits[0])
    assert len(seen) == 25  # 400 draws over 25 shifts: each missing has probability (24/25)^400 ~ 1e-7


def test_random_translate_as_a_loaders_transform_gives_each_batch_its_own_array():
    """A prober's finding (session 5): every call returned the transform's one output buffer,
    so a Loader's batches were one array, and fit's read-ahead uploaded overwritten batches
    (three seeded sim runs, three results)."""
    x = numpy.random.default_rng(0).random((12, 1, 6, 6)).astype(numpy.float32)
    t = numpy.arange(12)

    def batches():
        return [xb for xb, _ in xn.data.Loader(x, t, 4, transform=xn.augment.RandomTranslate(1, seed=3))]
    first, again = batches(), batches()
    assert len({id(b) for b in first}) == 3
    assert not numpy.array_equal(first[0], first[2])
    for a, b in zip(first, again):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fill", [-1.0, 300.0, 0.5])
def test_random_translate_refuses_a_fill_integer_images_cannot_hold(fill):
    """A prober's finding (session 5): on uint8 images fill=-1 filled 255, 300 filled 44."""
    with pytest.raises(ValueError, match=rf"fill={fill:g} is not a value of the batch's uint8"):
        xn.augment.RandomTranslate(1, fill=fill)(numpy.zeros((2, 1, 4, 4), numpy.uint8), None)


def test_random_translate_refuses_a_seed_philox_cannot_take():
    with pytest.raises(ValueError, match=r"seed must be below 2\*\*64"):
        xn.augment.RandomTranslate(1, seed=2 ** 64 + 5)  # was the same stream as seed 5
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0"):
        xn.augment.RandomTranslate(1, seed=-1)


def test_random_translate_takes_a_new_fill_or_shift_after_its_first_call():
    """A prober's finding (session 5): its buffers were kept by shape alone, so a new fill
    was ignored and a larger max_shift raised IndexError."""
    x = numpy.ones((2, 1, 3, 3), numpy.float32)
    shift = xn.augment.RandomTranslate(1, fill=0.0, seed=4)
    shift(x, None)
    shift.fill, shift.max_shift = numpy.float32(-7.0), numpy.int64(2)  # NumPy numbers: the Python ones
    assert (type(shift.fill), type(shift.max_shift)) == (float, int)
    again = xn.augment.RandomTranslate(2, fill=-7.0, seed=4)
    again(x, None)  # the same draws: one call each before
    numpy.testing.assert_array_equal(shift(x, None)[0], again(x, None)[0])


def test_random_translate_refuses_a_flat_batch_by_shape():
    with pytest.raises(xn.ShapeError, match=r"\(N, C, H, W\).*\(3, 784\).*flatten=False"):
        xn.augment.RandomTranslate(2)(numpy.zeros((3, 784), "float32"), None)


def test_random_translate_with_no_shift_is_the_identity():
    x = numpy.ones((2, 1, 3, 3), "float32")
    assert xn.augment.RandomTranslate(0)(x, None)[0] is x


# -- the example ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_mnist_speedrun_example_runs_on_a_slice_and_prints_accuracy_and_seconds(device):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "examples" / "mnist_speedrun.py"), "--device", device,
                             "--limit", "2000", "--batch-size", "50", "--lr", "0.05", "--epochs", "1"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    words = last.split()
    assert words[:2] == ["test", "accuracy"] and words[-1] == "s", last
    accuracy, seconds = float(words[2].rstrip(",")), float(words[3])
    # 40 steps (peak rate 0.05) on 2000 images: 0.80 on cpu, far above chance (0.1)
    assert 0.5 < accuracy <= 1.0 and seconds > 0, last


@pytest.mark.mnist
def test_mnist_speedrun_refuses_a_slice_too_small_for_its_schedule():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "examples" / "mnist_speedrun.py"), "--limit", "600",
                             "--epochs", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "600 training images in batches of 128 for 1 epoch(s) make 4 steps" in result.stderr
    assert "--limit" in result.stderr
