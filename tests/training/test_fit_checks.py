"""Issue 25, the training loop and its data (cases 1, 11, 12, 14, 16, 17, 21, 22): the NaN
guard never keeps or restores a non-finite state and says truthfully where it restored to;
ranks given different data are refused before the first step; xn.seed makes shuffles
reproducible; a schedule of another optimizer, a one-shot validation iterable and nested
Python sequences are each read as what they are; and fit, evaluate and predict leave the
caller's arrays as they were.

The MPI case runs this file as the job: ``mpiexec -n 2 python tests/training/test_fit_checks.py``."""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

HERE = Path(__file__).resolve().parents[1]  # tests/, where the MPI jobs are
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def _host_params(model):
    return {k: v.copy() for k, v in xn.to_host(model.params()).items()}


def _assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)


# 11: a NaN gradient with a finite loss -------------------------------------------------------

def _sqrt_of_square(w=1.0):
    """|z| written as sqrt(z * z): finite at z = 0, but its gradient there is 0/0 = NaN."""
    model = xn.nn.Sequential(xn.nn.Affine(1, 1), xn.nn.Lambda(lambda z: xn.functional.sqrt(z * z)))
    model.set_params({"0.W": numpy.full((1, 1), w, numpy.float32), "0.b": numpy.zeros(1, numpy.float32)})
    return model


def test_a_nan_gradient_with_a_finite_loss_is_not_kept_as_the_last_good_state(device):
    # Step 1 (x = 1, y = 1, t = 2; d/dz of (y - t)^2 is -2) moves W from 1 to 2 and b from 0 to 1 at
    # lr = 0.5, so step 2 (x = -0.5) meets z = 0 exactly: a finite loss and a NaN gradient. Every
    # later loss is NaN.
    x, t = numpy.array([[1.0], [-0.5]], numpy.float32), numpy.array([[2.0], [1.0]], numpy.float32)
    loss = xn.nn.MeanSquaredError()
    reference = _sqrt_of_square()  # the one good step, alone
    xn.fit(reference, loss, xn.optim.SGD(reference, lr=0.5), (x[:1], t[:1]), batch_size=1, shuffle=False)
    model = _sqrt_of_square()
    with numpy.errstate(invalid="ignore", divide="ignore"):
        with pytest.raises(xn.TrainingError) as caught:
            xn.fit(model, loss, xn.optim.SGD(model, lr=0.5), (x, t), epochs=2, batch_size=1, shuffle=False)
    message = str(caught.value)
    assert "after step 2 of epoch 1" in message and "the gradient of '0.W'" in message
    assert "restored to where they were after step 1 of epoch 1" in message
    restored = _host_params(model)
    assert all(numpy.isfinite(v).all() for v in restored.values())
    _assert_same_params(restored, _host_params(reference))


# 12: the last update overflows --------------------------------------------------------------

def test_an_update_that_overflows_on_the_last_step_stops_fit_and_restores(device):
    xn.seed(0)
    model = xn.nn.Affine(1, 1)
    before = _host_params(model)
    x, t = numpy.full((4, 1), 1e3, numpy.float32), numpy.zeros((4, 1), numpy.float32)
    with numpy.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(xn.TrainingError) as caught:
            xn.fit(model, xn.nn.MeanSquaredError(), xn.optim.SGD(model, lr=1e36), (x, t), batch_size=4)
    message = str(caught.value)
    assert "parameter 'W'" in message and "after step 1 of epoch 1" in message
    assert "restored to where they were before the first step" in message
    _assert_same_params(_host_params(model), before)


def test_a_buffer_that_holds_minus_inf_on_purpose_does_not_stop_training(device):
    class Masked(xn.nn.Layer):
        """Adds a constant mask (-inf marks a class that is never predicted)."""

        def __init__(self):
            super().__init__()
            self.add_buffer("mask", numpy.array([0.0, 0.0, -numpy.inf], numpy.float32))

        def forward(self, x):
            return x + self.buffer("mask")

        def backward(self, dout):
            return dout

    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(2, 3), Masked())
    x = numpy.random.default_rng(0).standard_normal((20, 2)).astype(numpy.float32)
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, (x[:, 0] > 0) * 1),
                     epochs=2, batch_size=5)
    assert numpy.isfinite(history.step_loss).all() and len(history.step_loss) == 8


# 16: xn.seed makes the shuffles reproducible ------------------------------------------------

def _shuffled_run(data, seed):
    xn.seed(seed)
    model = xn.nn.Affine(3, 2)
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.5), data, epochs=2, batch_size=10)
    return _host_params(model)


def test_xn_seed_makes_the_shuffles_of_fit_and_loader_reproducible(device):
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((60, 3)).astype(numpy.float32), rng.integers(0, 2, 60)
    _assert_same_params(_shuffled_run((x, t), 0), _shuffled_run((x, t), 0))
    loader = xn.data.Loader(x, t, batch_size=10, shuffle=True)  # made once, before the xn.seed calls
    _assert_same_params(_shuffled_run(loader, 0), _shuffled_run(loader, 0))
    xn.seed(5)
    first = numpy.concatenate([tb for _, tb in loader])
    xn.seed(5)
    assert numpy.array_equal(first, numpy.concatenate([tb for _, tb in loader]))


# 17: a schedule built for another optimizer ----------------------------------------------

def test_a_schedule_built_for_another_optimizer_is_refused():
    with xn.use_device("cpu"):
        xn.seed(0)
        model = xn.nn.Affine(3, 2)
        before = _host_params(model)
        trained, other = xn.optim.SGD(model, lr=0.1), xn.optim.SGD(model, lr=0.1)
        schedule = xn.optim.schedules.StepDecay(other, step_size=1, gamma=0.5)
        data = (numpy.ones((4, 3), numpy.float32), numpy.zeros(4, numpy.int64))
        with pytest.raises(ValueError, match=r"built for another optimizer.*StepDecay\(optimizer, \.\.\.\)"):
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), trained, data, epochs=2, schedule=schedule)
        assert other.lr == 0.1 and trained.lr == 0.1
        _assert_same_params(_host_params(model), before)  # refused before the first step
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), trained, data, epochs=2,
               schedule=xn.optim.schedules.StepDecay(trained, step_size=1, gamma=0.5))
        assert trained.lr == 0.025


# 21: a one-shot iterable as validation ------------------------------------------------------

def test_a_generator_as_validation_is_refused_at_the_start_for_several_epochs(device):
    xn.seed(0)
    model = xn.nn.Affine(3, 2)
    before = _host_params(model)
    x, t = numpy.random.default_rng(0).standard_normal((40, 3)).astype(numpy.float32), numpy.arange(40) % 2
    batches = [(x[lo:lo + 10], t[lo:lo + 10]) for lo in range(0, 40, 10)]
    opt, loss = xn.optim.SGD(model, lr=0.1), xn.nn.SoftmaxCrossEntropy()
    with pytest.raises(TypeError, match=r"validation= is a generator.*3 epochs.*list of batches"):
        xn.fit(model, loss, opt, (x, t), epochs=3, validation=(b for b in batches))
    _assert_same_params(_host_params(model), before)
    # one epoch reads it once, as a list would be read
    once = xn.fit(model, loss, opt, (x, t), validation=(b for b in batches))
    assert once.val_loss == [xn.evaluate(model, batches, loss_fn=loss)["loss"]]
    several = xn.fit(model, loss, opt, (x, t), epochs=3, validation=batches)
    assert len(several.val_loss) == 3


# 22: a pair of nested Python sequences -----------------------------------------------------

def test_a_pair_of_nested_sequences_is_a_pair_in_fit_evaluate_and_predict(device):
    nested = (((0.0, 0.0), (0.0, 1.0), (1.0, 0.0)), (0, 1, 1))
    arrays = (numpy.array(nested[0], numpy.float32), numpy.array(nested[1]))
    runs = []
    for data in (nested, arrays):
        xn.seed(0)
        model = xn.nn.Affine(2, 2)
        history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), data, epochs=2,
                         batch_size=2, seed=0)
        runs.append((history.step_loss, _host_params(model), xn.evaluate(model, data),
                     xn.to_host(xn.predict(model, data[0]))))
    (loss_n, params_n, eval_n, pred_n), (loss_a, params_a, eval_a, pred_a) = runs
    assert loss_n == loss_a and eval_n == eval_a and len(loss_n) == 4
    _assert_same_params(params_n, params_a)
    numpy.testing.assert_array_equal(pred_n, pred_a)
    assert xn.evaluate(model, [list(map(list, nested[0])), list(nested[1])]) == eval_a  # lists as well
    assert xn.evaluate(model, (list(arrays[0]), nested[1])) == eval_a  # x as a list of three row arrays


def test_two_batches_of_arrays_are_still_two_batches(device):
    # x and t of one shape, so the list of two batches could pass for a pair: it holds arrays
    x, t = xn.datasets.exp_regression(40, seed=0)
    loss = xn.nn.MeanSquaredError()
    runs = []
    for data in ([(x[:20], t[:20]), (x[20:], t[20:])], (x, t)):
        xn.seed(0)
        model = xn.nn.Affine(1, 1)
        history = xn.fit(model, loss, xn.optim.SGD(model, lr=0.01), data, batch_size=20, shuffle=False)
        runs.append((history.step_loss, _host_params(model)))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 2
    _assert_same_params(runs[0][1], runs[1][1])


# 1: the caller's arrays stay as they were ---------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "sim"])
def test_evaluate_fit_validation_and_predict_leave_the_callers_arrays_as_they_were(name):
    rng = numpy.random.default_rng(0)
    host_x = rng.standard_normal((12, 1, 2, 2)).astype(numpy.float32)  # negatives, for the ReLU
    host_t = rng.integers(0, 2, 12)
    expected_x, expected_t = host_x.copy(), host_t.copy()
    with xn.use_device(name):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Flatten(), xn.nn.ReLU(), xn.nn.Affine(4, 2))
        x, t = xn.to_device((host_x, host_t))  # the caller's arrays on the device (on cpu: these very arrays)
        xn.evaluate(model, (x, t))
        xn.predict(model, x, batch_size=5)
        train = xn.to_device((host_x[:8].copy(), host_t[:8].copy()))
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), train, epochs=2, batch_size=4,
               validation=(x, t))
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=4)
        numpy.testing.assert_array_equal(xn.to_host(x), expected_x)
        numpy.testing.assert_array_equal(xn.to_host(t), expected_t)


@pytest.mark.parametrize("labels, message", [
    (lambda t: numpy.where(t == 1, 3, t), r"validation: label 3 at position \d+ is not a class index for a model "
                                          r"with 3 outputs"),
    (lambda t: numpy.eye(4, dtype=numpy.float32)[t], r"validation: one-hot labels of 4 columns for a model with "
                                                     r"3 outputs")])
def test_validation_labels_the_model_has_no_output_for_are_named_at_the_first_step(labels, message, device):
    """A prober's finding (session 5): they were found by the first validation, after a whole
    epoch of training."""
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((40, 5)).astype(numpy.float32), rng.integers(0, 3, 40)
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(5, 3))
        opt = xn.optim.SGD(model, lr=0.1)
    with pytest.raises(ValueError, match=message):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=2, batch_size=10,
               validation=(x[:20], labels(t[:20])), progress=False)
    assert opt.t == 0


def test_the_nan_guard_puts_dropouts_counter_back_with_the_weights(device):
    """A prober's finding (session 5): the weights and the optimizer came back as they were
    after the last good check, Dropout's counter did not (a run from there drew other masks)."""
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((80, 5)).astype(numpy.float32), rng.integers(0, 3, 80)
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(5, 8), xn.nn.Dropout(0.3), xn.nn.Affine(8, 3))
        scale = device.xp.ones((), dtype=numpy.float32)
    counters = {}

    class Spoil(xn.callbacks.Callback):
        def on_chunk_end(self, run, logs):  # after the guard's check of this chunk
            counters[logs["step"]] = int(xn.to_host(model.random_state()["1.offset"]))
            if logs["step"] == 4:
                scale[...] = numpy.nan
    with pytest.raises(xn.TrainingError, match="after step 4 of epoch 1"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=10,
               transform=lambda xb, tb: (xb * scale, tb), callbacks=[Spoil()], progress=False)
    assert int(xn.to_host(model.random_state()["1.offset"])) == counters[4]  # not step 5's


def test_the_nan_guard_puts_an_augmentations_counter_back_too(device):
    """A reviewer's finding (session 5): RandomTranslate's counter stayed a chunk ahead."""
    rng = numpy.random.default_rng(0)
    x, t = rng.random((40, 1, 4, 4)).astype(numpy.float32), rng.integers(0, 3, 40)
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Flatten(), xn.nn.Affine(16, 3))
    shift = xn.augment.RandomTranslate(1, seed=0)
    counters = {}

    class Spoil(xn.callbacks.Callback):
        def on_chunk_end(self, run, logs):
            counters[logs["step"]] = int(xn.to_host(next(iter(shift.random_state().values()))))
            if logs["step"] == 2:
                run.model.params()["1.W"][...] = numpy.nan  # the next step's loss: NaN
    with pytest.raises(xn.TrainingError, match="after step 2 of epoch 1"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=10,
               transform=shift, callbacks=[Spoil()], progress=False)
    assert int(xn.to_host(next(iter(shift.random_state().values())))) == counters[2]


class _Seeded:
    def __call__(self, xb, tb):
        return xb * 1.0, tb


class _SklearnState(_Seeded):
    random_state = 42


class _ScalarState(_Seeded):
    def random_state(self):
        return {"seed": numpy.uint64(3)}


class _ReseedingState(_Seeded):
    def random_state(self, seed):
        return seed


@pytest.mark.parametrize("kind", [_SklearnState, _ScalarState, _ReseedingState])
def test_a_transform_whose_random_state_is_not_xpnets_trains(kind, device):
    """Probers' findings on this session's change: the guard called any random_state and
    copied whatever it gave, so a transform with scikit-learn's random_state = 42, one giving
    numpy scalars, or a random_state(seed) failed every fit before its first step."""
    Noisy = kind
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((20, 5)).astype(numpy.float32), rng.integers(0, 3, 20)
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(5, 3))
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=10,
                     transform=Noisy(), progress=False)
    assert len(history.epoch_loss) == 1


# 14: ranks given different data -------------------------------------------------------------

def _mpi_job(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "XPNET_DEVICE"}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])  # this xpnet
    return subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")
@pytest.mark.parametrize("call, batch_size, steps", [("fit", 40, (3, 3)), ("fit", 50, (3, 2)),
                                                     ("evaluate", 40, None)])
@pytest.mark.slow
def test_ranks_given_different_data_are_refused_naming_both_sizes(call, batch_size, steps):
    result = _mpi_job(call, "--batch-size", str(batch_size), "--samples", "120", "100")
    assert result.returncode != 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "trained" not in result.stdout and "Message truncated" not in result.stderr
    if steps:
        sizes = (f"rank 0 has 120 samples, {steps[0]} steps", f"rank 1 has 100 samples, {steps[1]} steps")
    else:
        sizes = ("rank 0 has 120 samples", "rank 1 has 100 samples")
    assert f"{call}: the 2 ranks were given different data" in result.stderr, result.stderr[-3000:]
    assert all(size in result.stderr for size in sizes), result.stderr[-3000:]


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")
@pytest.mark.parametrize("call, samples, batch, sizes", [
    ("fit-generator", (50, 46), 2, "rank 0 read 10 samples; rank 1 read 6 samples"),  # same steps, short last
    ("fit-generator", (60, 40), 2, "rank 0 read 20 samples; rank 1 had no batch left"),  # one ends first
    ("fit-list", (30, 30), 0, "rank 0 read 20 samples; rank 1 read 10 samples")])  # same totals, other order
@pytest.mark.slow
def test_ranks_reading_batches_of_different_sizes_are_refused_at_that_batch(call, samples, batch, sizes):
    """A prober's finding (session 5): batches whose sizes no rank knows before reading them
    (a generator; a list whose totals agree) were split by each rank's own total, so the
    summed gradient weighted the parts wrongly with no error, or the ranks met in different
    collectives (MPICH: "Message truncated")."""
    result = _mpi_job(call, "--batch-size", "20", "--samples", *map(str, samples))
    assert result.returncode != 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "trained" not in result.stdout and "Message truncated" not in result.stderr
    assert f"fit data, epoch 1, batch {batch}: the 2 ranks read batches of different sizes: {sizes}" \
        in result.stderr, result.stderr[-3000:]


def _batches(call, x, t, batch_size):
    """``fit``'s data for the batch cases: a generator, or a list (rank 1's in reverse order)."""
    cuts = [(k, k + batch_size) for k in range(0, len(x), batch_size)]
    if call == "fit-generator":
        return ((x[a:b], t[a:b]) for a, b in cuts)
    return [(x[a:b], t[a:b]) for a, b in (cuts[::-1] if xn.distributed.rank() == 1 else cuts)]


def _job(call, batch_size, samples):
    """One rank's part: its own number of samples (the mistake under test)."""
    n = samples[xn.distributed.rank()]
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((n, 4)), rng.integers(0, 2, n)
    with xn.use_device("cpu"):
        xn.seed(0)
        model = xn.nn.Affine(4, 2, dtype="float64")
        if call.startswith("fit-"):
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), _batches(call, x, t, batch_size))
        elif call == "fit":
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=batch_size)
        else:
            xn.evaluate(model, (x, t), batch_size=batch_size)
    print("trained" if call.startswith("fit") else "evaluated", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("call", choices=["fit", "evaluate", "fit-generator", "fit-list"])
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--samples", type=int, nargs=2, default=[120, 100])
    args = parser.parse_args()
    _job(args.call, args.batch_size, args.samples)


def test_fit_tells_the_loss_its_labels_were_checked_on_the_host(device, monkeypatch):
    """fit checks class indices on the host, so the loss adds no device check of its own
    inside the step (five kernels a step); a direct call still checks, and so does a step
    whose transform may have changed the labels."""
    seen = []
    routine = device.backend.softmax_cross_entropy

    def spy(z, t, out=None, bad=None, **kwargs):
        seen.append(bad is None)
        return routine(z, t, out=out, bad=bad, **kwargs)

    monkeypatch.setattr(device.backend, "softmax_cross_entropy", spy)
    x = numpy.random.default_rng(0).standard_normal((8, 3)).astype(numpy.float32)
    t = numpy.array([0, 1, 2, 0, 1, 2, 0, 1])
    model = xn.nn.Sequential(xn.nn.Affine(3, 3))
    loss = xn.nn.SoftmaxCrossEntropy()
    xn.fit(model, loss, xn.optim.SGD(model, lr=0.1), (x, t), epochs=1, batch_size=4, graph=False, progress=False)
    assert seen and all(seen)
    seen.clear()
    labels = xn.to_device(t)
    loss(model(xn.to_device(x)), labels)
    # a direct call checks device labels on the device (host labels, on the host: no mask)
    assert seen == [isinstance(labels, numpy.ndarray)]
    seen.clear()
    xn.fit(model, loss, xn.optim.SGD(model, lr=0.1), (x, t), epochs=1, batch_size=4, graph=False, progress=False,
           transform=lambda xb, tb: (xb, tb))
    assert seen and all(s == isinstance(labels, numpy.ndarray) for s in seen)  # checked again
