"""The training entry points: predict, evaluate and fit's validation leave the caller's
arrays alone (property a); predict in batches equals one forward (b); save -> load ->
continue equals uninterrupted training for every optimizer and schedule, across device
moves (f); ``xn.seed(n)`` makes a run repeatable (g)."""
import numpy
import pytest

import xpnet as xn

from .registry import OPTIMIZERS, SCHEDULES

# Models whose first layers hand on their input (or a view of it) to an activation.
FRONTS = {
    "flatten>relu": lambda: [xn.nn.Flatten(), xn.nn.ReLU()],
    "dropout>relu": lambda: [xn.nn.Dropout(0.5, seed=1), xn.nn.ReLU()],  # the identity in eval mode
    "view_lambda>sigmoid": lambda: [xn.nn.Lambda(lambda x: x[:, ::-1], name="view"), xn.nn.Sigmoid()],
    "flatten>dropout>tanh": lambda: [xn.nn.Flatten(), xn.nn.Dropout(0.2, seed=2), xn.nn.Tanh()],
    "relu": lambda: [xn.nn.ReLU()],
}


def _model(front, features=6, classes=3):
    return xn.nn.Sequential(*FRONTS[front](), xn.nn.Affine(features, classes, seed=0))


def _data(n=23, features=6, classes=3, seed=0):
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(numpy.float32), rng.integers(0, classes, n)


def _host_or_device(x, where, device):
    return x if where == "host" else xn.to_device(x, device)


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("front", list(FRONTS))
def test_predict_leaves_the_input_alone(front, where, device):
    x, _ = _data()
    given = _host_or_device(x, where, device)
    before = xn.to_host(given).copy()
    with xn.use_device(device):
        xn.predict(_model(front), given, batch_size=10)
    numpy.testing.assert_array_equal(xn.to_host(given), before)


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("front", list(FRONTS))
def test_evaluate_leaves_the_data_alone(front, where, device):
    x, t = _data()
    given = _host_or_device(x, where, device)
    before = xn.to_host(given).copy()
    with xn.use_device(device):
        xn.evaluate(_model(front), (given, _host_or_device(t, where, device)), batch_size=10)
    numpy.testing.assert_array_equal(xn.to_host(given), before)


@pytest.mark.parametrize("front", list(FRONTS))
def test_fit_leaves_training_and_validation_data_alone(front, device):
    (x, t), (xv, tv) = _data(), _data(seed=1)
    copies = x.copy(), xv.copy()
    with xn.use_device(device):
        model = _model(front)
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), epochs=2,
               batch_size=10, validation=(xv, tv), progress=False, seed=0)
    numpy.testing.assert_array_equal(x, copies[0])
    numpy.testing.assert_array_equal(xv, copies[1])


@pytest.mark.parametrize("front", list(FRONTS))
def test_predict_result_does_not_change_on_a_later_call(front, device):
    x, _ = _data()
    with xn.use_device(device):
        model = _model(front)
        first = xn.predict(model, x, batch_size=23)
        kept = xn.to_host(first).copy()
        xn.predict(model, x[::-1].copy(), batch_size=23)
        model(xn.to_device(x[:5] * 2, device))
    numpy.testing.assert_array_equal(xn.to_host(first), kept)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 22, 23, 100])
@pytest.mark.parametrize("front", list(FRONTS))
def test_predict_in_batches_equals_one_forward(front, batch_size, device):
    """Batch sizes with remainders; the reference is one eval-mode forward over all 23 rows."""
    x, _ = _data()
    with xn.use_device(device):
        model = _model(front)
        whole = xn.to_host(model.eval()(xn.to_device(x.copy(), device))).copy()
        model.train()
        batched = xn.to_host(xn.predict(model, x.copy(), batch_size=batch_size))
    numpy.testing.assert_allclose(batched, whole, rtol=1e-6, atol=1e-6)  # float32 products of other sizes


# -- f: save -> load -> continue --------------------------------------------------------------------
def _resumable_model(seed=0):
    return xn.nn.Sequential(xn.nn.Affine(6, 8, seed=seed), xn.nn.BatchNorm(8), xn.nn.ReLU(),
                            xn.nn.Dropout(0.3, seed=seed + 1), xn.nn.Affine(8, 3, seed=seed + 2))


def _fit(model, opt, epochs, schedule=None):
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, _data(40), epochs=epochs, batch_size=16, shuffle=False,
           progress=False, schedule=schedule, graph=False)


def _state(model):
    return xn.to_host({**model.params(), **model.buffers()})


def _same(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        numpy.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k} differs")


OPT = {e.name: e.make for e in OPTIMIZERS}
SCHED = {e.name: e.make for e in SCHEDULES}


@pytest.mark.parametrize("name", list(OPT))
def test_save_load_continue_equals_uninterrupted_training(name, device, tmp_path):
    with xn.use_device(device):
        straight = _resumable_model()
        opt = OPT[name](straight)
        _fit(straight, opt, 2)
        _fit(straight, opt, 2)

        first = _resumable_model()
        opt1 = OPT[name](first)
        _fit(first, opt1, 2)
        xn.save(first, tmp_path / "ckpt.npz", optimizer=opt1)
        resumed = _resumable_model()  # built as the first was, as a resuming script would: the file
        resumed.set_params({k: 0 * v for k, v in xn.to_host(resumed.params()).items()})  # brings the weights
        opt2 = OPT[name](resumed)
        xn.load(resumed, tmp_path / "ckpt.npz", optimizer=opt2)
        _fit(resumed, opt2, 2)
    _same(_state(straight), _state(resumed), f"{name} resumed")


@pytest.mark.parametrize("name", list(SCHED))
def test_save_load_continue_with_a_schedule_equals_uninterrupted_training(name, device, tmp_path):
    with xn.use_device(device):
        straight = _resumable_model()
        opt = xn.optim.Momentum(straight, lr=0.1)
        schedule = SCHED[name](opt)
        _fit(straight, opt, 4, schedule)

        first = _resumable_model()
        opt1 = xn.optim.Momentum(first, lr=0.1)
        _fit(first, opt1, 2, SCHED[name](opt1))
        xn.save(first, tmp_path / "ckpt.npz", optimizer=opt1)
        resumed = _resumable_model()
        opt2 = xn.optim.Momentum(resumed, lr=0.1)
        schedule2 = SCHED[name](opt2)
        xn.load(resumed, tmp_path / "ckpt.npz", optimizer=opt2)
        schedule2.epoch = 2  # the schedule's own count: the checkpoint does not hold it
        _fit(resumed, opt2, 2, schedule2)
        assert opt2.lr == pytest.approx(opt.lr, rel=1e-12)
    _same(_state(straight), _state(resumed), f"{name} resumed")


MOVES = {"cpu>sim>cpu": ["cpu", "sim", "cpu"], "sim:0>sim:1": ["sim:0", "sim:1", "sim:1"],
         "sim>cpu>sim": ["sim", "cpu", "sim"]}


@pytest.mark.parametrize("moves", list(MOVES))
@pytest.mark.parametrize("name", ["Adam", "Momentum", "AdamW"])
def test_training_across_device_moves_equals_training_in_place(name, moves):
    places = MOVES[moves]
    with xn.use_device(places[0]):
        straight = _resumable_model()
        opt = OPT[name](straight)
        for _ in places:
            _fit(straight, opt, 1)
        moved = _resumable_model()
    opt2 = OPT[name](moved)
    for place in places:
        moved.to(place)
        with xn.use_device(place):
            _fit(moved, opt2, 1)
    moved.to(places[0])
    _same(_state(straight), _state(moved), f"{name} moved {moves}")


# -- g: xn.seed ------------------------------------------------------------------------------------------
def test_seed_then_the_same_fit_twice_gives_identical_weights(device):
    def run():
        xn.seed(123)
        with xn.use_device(device):
            model = xn.nn.Sequential(xn.nn.Affine(6, 8), xn.nn.ReLU(), xn.nn.Dropout(0.4), xn.nn.Affine(8, 3))
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=0.01), _data(40), epochs=2,
                   batch_size=16, progress=False)
            return _state(model)
    _same(run(), run(), "seeded run")
