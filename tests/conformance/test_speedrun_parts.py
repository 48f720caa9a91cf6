"""Generic properties of the per-step schedules and the augmentations (registry.STEP_SCHEDULES,
registry.AUGMENTATIONS): the device follows the formula at every step, a recorded step
follows it as the step-by-step one does, a checkpoint resumes it exactly, and an
augmentation draws only allowed outputs, the same on cpu and sim, anew on every call of a
recorded step, reproducibly under ``xn.seed``."""
import numpy
import pytest

import xpnet as xn

from .registry import AUGMENTATIONS, STEP_SCHEDULES
from .support import host_input

SCHED = {e.name: e for e in STEP_SCHEDULES}
BAD_SCHED = {f"{e.name}-{id}": build for e in STEP_SCHEDULES for id, build in e.bad_args}
AUG = {e.name: e for e in AUGMENTATIONS}
BAD_AUG = {f"{e.name}-{id}": build for e in AUGMENTATIONS for id, build in e.bad_args}


def _argument(case):
    return case.split("-", 1)[1].split("=")[0].split(" ")[0]


@pytest.mark.parametrize("name", list(SCHED))
def test_step_schedule_rate_on_the_device_matches_the_formula_at_every_step(name, device):
    entry = SCHED[name]
    with xn.use_device(device):
        model = xn.nn.Affine(2, 2, dtype="float64", seed=0)
    opt = xn.optim.SGD(model, lr=0.1)
    schedule = entry.make(opt)
    assert opt.lr == pytest.approx(entry.reference(0), rel=1e-12, abs=1e-15)  # the first step's, before it
    for k in range(entry.steps + 3):  # and past the end, where the rate holds
        opt.step()
        # float64 on the device; 1e-12 leaves room for a device cos a few ulp from NumPy's
        assert opt.lr == pytest.approx(entry.reference(k), rel=1e-12, abs=1e-15), f"step {k}"
        assert schedule.rate(k) == pytest.approx(entry.reference(k), rel=1e-12, abs=1e-15), f"host rate, step {k}"


def _data(n=48):
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((n, 6)).astype("float32"), rng.integers(0, 3, n)


def _model():
    return xn.nn.Sequential(xn.nn.Affine(6, 8, seed=1), xn.nn.ReLU(), xn.nn.Affine(8, 3, seed=2))


def _fit(model, opt, epochs, graph, schedule=None):
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, _data(), epochs=epochs, batch_size=16, shuffle=False,
           progress=False, graph=graph, schedule=schedule)


def _state(model):
    return xn.to_host(model.params())


def _same(a, b, what):
    for k in a:
        numpy.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k} differs")


@pytest.mark.parametrize("name", list(SCHED))
def test_recorded_fit_with_a_step_schedule_equals_the_step_by_step_fit(name, device):
    entry, states = SCHED[name], []
    for graph in (False, True):
        with xn.use_device(device):
            model = _model()
            opt = xn.optim.Momentum(model, lr=0.1)
            entry.make(opt)
            _fit(model, opt, 4, graph)  # 12 steps: through the end of every sample schedule
            assert opt.lr == pytest.approx(entry.reference(11), rel=1e-6), "the last step's rate"
            states.append(_state(model))
    _same(states[0], states[1], f"{name} recorded")


@pytest.mark.parametrize("name", list(SCHED))
def test_save_load_continue_with_a_step_schedule_equals_uninterrupted_training(name, device, tmp_path):
    entry = SCHED[name]
    with xn.use_device(device):
        straight = _model()
        opt = xn.optim.Momentum(straight, lr=0.1)
        entry.make(opt)
        _fit(straight, opt, 4, True)

        first = _model()
        opt1 = xn.optim.Momentum(first, lr=0.1)
        schedule1 = entry.make(opt1)
        _fit(first, opt1, 2, True, schedule1)
        xn.save(first, tmp_path / "ckpt.npz", optimizer=opt1, schedule=schedule1)
        resumed = _model()
        opt2 = xn.optim.Momentum(resumed, lr=0.1)
        schedule2 = entry.make(opt2)
        xn.load(resumed, tmp_path / "ckpt.npz", optimizer=opt2, schedule=schedule2)
        _fit(resumed, opt2, 2, True, schedule2)
        assert opt2.t == opt.t == 12
    _same(_state(straight), _state(resumed), f"{name} resumed")


@pytest.mark.parametrize("case", list(BAD_SCHED))
def test_step_schedule_refuses_an_out_of_range_argument(case):
    opt = xn.optim.SGD(xn.nn.Affine(2, 2), lr=0.1)
    with pytest.raises((ValueError, TypeError), match=_argument(case)):
        BAD_SCHED[case](opt)
    assert opt.step_schedule is None and opt.lr == 0.1, "a refused schedule must leave the optimizer as it was"


# -- augmentations ---------------------------------------------------------------------------------
def _batch(entry):
    return host_input(entry.shape, 3).astype("float32")


def _draws(entry, device, calls=3, seed=5):
    with xn.use_device(device):
        augment = entry.make(seed)
        x = xn.to_device(_batch(entry), device)
        return [xn.to_host(augment(x, None)[0]).copy() for _ in range(calls)]


@pytest.mark.parametrize("name", list(AUG))
def test_augmentation_draws_only_allowed_outputs_and_differs_between_calls(name, device):
    entry = AUG[name]
    x, draws = _batch(entry), _draws(AUG[name], device)
    for d in draws:
        assert d.shape == x.shape and d.dtype == x.dtype
        for i in range(len(x)):
            assert any(numpy.array_equal(d[i], o) for o in entry.outputs(x[i])), f"sample {i}: not an allowed output"
    assert not all(numpy.array_equal(draws[0], d) for d in draws[1:]), "every call drew the same"


@pytest.mark.parametrize("name", list(AUG))
def test_augmentation_is_the_same_on_every_device_for_one_seed(name, device):
    for a, b in zip(_draws(AUG[name], "cpu"), _draws(AUG[name], device)):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(AUG))
def test_augmentation_without_a_seed_is_reproducible_under_xn_seed(name, device):
    def run():
        xn.seed(11)
        return _draws(AUG[name], device, seed=None)
    for a, b in zip(run(), run()):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(AUG))
def test_recorded_augmentation_draws_anew_on_every_replay(name, device):
    entry = AUG[name]
    eager = _draws(entry, device, calls=4)
    with xn.use_device(device):
        augment = entry.make(5)
        x = xn.to_device(_batch(entry), device)
        out = xn.to_device(numpy.zeros(entry.shape, "float32"), device)

        def step():
            out[...] = augment(x, None)[0]
            return out
        run = device.backend.record(step)
        replayed = [xn.to_host(run()).copy() for _ in range(4)]
    for i, (a, b) in enumerate(zip(eager, replayed)):
        numpy.testing.assert_array_equal(a, b, err_msg=f"call {i}")


@pytest.mark.parametrize("case", list(BAD_AUG))
def test_augmentation_refuses_an_out_of_range_argument(case):
    with pytest.raises((ValueError, TypeError), match=_argument(case)):
        BAD_AUG[case]()
