"""Reliability issue, checkpoints and optimizers (cases 2, 3, 7, 15, 18, 19, 24, 29 and the
contributor's case 30): a memory-mapped set rewritten from itself, one rule for what save
writes and load reads, save under mpiexec, the learning rate and schedule restored,
training continued after a device move or a checkpoint, values checked at load, eps=0,
and an optimizer with a running scalar (docs/contributing.md's Nadam) kept whole."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

HERE = Path(__file__).resolve().parents[1]  # tests/, where the MPI jobs are
GUIDE = HERE.parent / "docs" / "contributing.md"
OPTIMIZERS = ["SGD", "Momentum", "AdaGrad", "RMSProp", "Adam", "AdamW"]
# cpu and sim do the same float arithmetic, so a run that changes device halfway must give
# exactly the weights of one that does not; sim:0 -> sim:1 is a move between two GPUs.
MOVES = [("cpu", "sim"), ("sim", "cpu"), ("sim:0", "sim:1")]


def _data():
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((40, 4)), rng.integers(0, 3, 40)


def _model(device, dtype="float32"):
    xn.seed(0)
    with xn.use_device(device):
        return xn.nn.Sequential(xn.nn.Affine(4, 6, dtype=dtype), xn.nn.Tanh(), xn.nn.Affine(6, 3, dtype=dtype))


def _optimizer(name, model):
    return getattr(xn.optim, name)(model, lr=0.05)


def _fit(model, loss, opt, device=None, schedule=None, data=None):
    return xn.fit(model, loss, opt, _data() if data is None else data, batch_size=10, seed=1, device=device,
                  schedule=schedule)


def _weights(model):
    return {k: v.copy() for k, v in xn.to_host(model.params()).items()}


def _assert_identical(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        numpy.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _rewrite(path, change):
    """Let ``change(arrays, meta)`` edit a checkpoint's arrays and record, and write it back."""
    with numpy.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__xpnet__")))
    change(arrays, meta)
    numpy.savez(path, __xpnet__=numpy.array(json.dumps(meta)), **arrays)


def _guide():
    """docs/contributing.md's code blocks, run in order as one script: its names."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    namespace = {"__name__": "contributing"}
    exec(compile("\n".join(blocks), str(GUIDE), "exec"), namespace)  # noqa: S102 (our own document)
    return namespace


# -- case 2: to_memmap rewrites a set from its own mapping --------------------------------
_REWRITE = """
import os, sys, numpy, xpnet as xn
folder = sys.argv[1]
xn.datasets.to_memmap(folder, numpy.ones((1000, 20)), numpy.zeros(1000))
os.chmod(os.path.join(folder, "x.npy"), 0o640)
x, t = xn.datasets.load_memmap(folder)
xn.datasets.to_memmap(folder, x * 2, t)
x2, t2 = xn.datasets.load_memmap(folder)
print(float(x.sum()), float(t.sum()), float(x2.sum()), float(t2.sum()), len(t2))
"""


@pytest.mark.slow
def test_to_memmap_rewrites_a_set_from_its_own_mapping(tmp_path):
    # in a process of its own: on the old code the earlier mapping dies with SIGBUS
    folder = tmp_path / "set"
    result = subprocess.run([sys.executable, "-c", _REWRITE, str(folder)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    old_x, old_t, new_x, new_t, n = result.stdout.split()
    assert (float(old_x), float(old_t)) == (20000.0, 0.0)  # the mapping taken before reads the old files
    assert (float(new_x), float(new_t), int(n)) == (40000.0, 0.0, 1000)
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "t.npy", "x.npy"]  # no temporaries
    assert stat.S_IMODE((folder / "x.npy").stat().st_mode) == 0o640  # the file's mode is kept


def test_a_failed_memmap_rewrite_leaves_no_temporaries_and_the_old_set(tmp_path, monkeypatch):
    folder = xn.datasets.to_memmap(tmp_path / "set", numpy.ones((10, 2)), numpy.zeros(10))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(numpy, "save", full)
    with pytest.raises(OSError, match="No space"):
        xn.datasets.to_memmap(folder, numpy.full((10, 2), 3.0), numpy.ones(10))
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "t.npy", "x.npy"]
    x, t = xn.datasets.load_memmap(folder)
    assert float(x.sum()) == 20.0 and float(t.sum()) == 0.0


# -- case 3: one rule for save and load ----------------------------------------------------
class Masked(xn.nn.Layer):
    """Adds a fixed mask (-inf where a class is ruled out) to its input."""

    def __init__(self):
        super().__init__()
        self.add_buffer("mask", numpy.array([0.0, 0.0, -numpy.inf], dtype=numpy.float32))

    def forward(self, x):
        return x + self.buffer("mask")

    def backward(self, dout):
        return dout


def test_a_buffer_holding_minus_inf_saves_and_loads(device, tmp_path):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), Masked())
    xn.save(model, tmp_path / "c.npz")
    fresh = xn.nn.Sequential(xn.nn.Affine(4, 3), Masked())
    fresh.layers[1].buffer("mask")[...] = 0
    xn.load(fresh, tmp_path / "c.npz")
    numpy.testing.assert_array_equal(xn.to_host(fresh.buffers()["1.mask"]), [0, 0, -numpy.inf])


def test_save_refuses_nan_weights_with_loads_words_and_keeps_the_last_good_file(device, tmp_path):
    path = tmp_path / "c.npz"
    model = _model(device)
    xn.save(model, path)
    good = _weights(model)
    model.params()["0.W"][0, 0] = numpy.nan
    with pytest.raises(xn.CheckpointError) as saving:
        xn.save(model, path)
    assert "'0.W' holds NaN" in str(saving.value) and "was not written" in str(saving.value)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
    fresh = _model(device)
    xn.load(fresh, path)  # the last good checkpoint is still there, and loads
    _assert_identical(_weights(fresh), good)
    # what save says is what load says of such a file
    _rewrite(path, lambda arrays, meta: arrays["param/0.W"].flat.__setitem__(0, numpy.nan))
    with pytest.raises(xn.CheckpointError) as loading:
        xn.load(fresh, path)
    said = re.search(r"'0\.W' holds [^;.]*", str(loading.value)).group(0)
    assert said in str(saving.value)


def test_save_refuses_a_nan_buffer_as_load_does(tmp_path):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), Masked())
    model.layers[1].buffer("mask")[0] = numpy.nan
    with pytest.raises(xn.CheckpointError, match=r"'1\.mask' holds NaN \(buffers may hold \+-inf"):
        xn.save(model, tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()


# -- case 7: under mpiexec, save returns on every rank once the file is in place ----------
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


@pytest.mark.slow
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")
def test_every_rank_loads_the_file_it_just_saved(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XPNET_DEVICE"}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_checkpoint_job.py"),
                             str(tmp_path / "c.npz")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert sorted(re.findall(r"rank \d: \d+ of \d+ loads read the new file", result.stdout)) == [
        "rank 0: 4 of 4 loads read the new file", "rank 1: 4 of 4 loads read the new file"]


@pytest.mark.slow
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")
def test_a_write_that_fails_on_rank_0_raises_on_every_rank(tmp_path):
    """A prober's finding (session 5): the barrier sat in a ``finally``, so rank 1 returned
    from save, and could load the old file, before rank 0 raised."""
    env = {k: v for k, v in os.environ.items() if k != "XPNET_DEVICE"}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_checkpoint_job.py"),
                             str(tmp_path / "c.npz"), "--fail"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "rank 0: save raised OSError: [Errno 28] No space left on device" in result.stdout, result.stdout
    assert (f"rank 1: save raised CheckpointError: save: rank 0 could not write {tmp_path / 'c.npz'} "
            f"(its error says why)") in result.stdout, result.stdout


# -- case 15: the learning rate and the schedule come back with the checkpoint -------------
def test_load_restores_the_learning_rate(device, tmp_path):
    model = _model(device)
    opt = xn.optim.Momentum(model, lr=0.05)
    schedule = xn.optim.schedules.StepDecay(opt, step_size=1, gamma=0.1)
    _fit(model, xn.nn.SoftmaxCrossEntropy(), opt, schedule=schedule)
    assert opt.lr == pytest.approx(0.005)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    fresh = _model(device)
    resumed = xn.optim.Momentum(fresh, lr=0.05)
    xn.load(fresh, tmp_path / "c.npz", optimizer=resumed)
    assert resumed.lr == opt.lr


@pytest.mark.parametrize("schedule", ["StepDecay", "Cosine"])
def test_a_run_resumed_with_its_schedule_equals_the_uninterrupted_run(device, tmp_path, schedule):
    settings = {"StepDecay": {"step_size": 1, "gamma": 0.5}, "Cosine": {"epochs": 3, "min_lr": 0.001}}[schedule]
    loss = xn.nn.SoftmaxCrossEntropy()
    model = _model(device)
    opt = xn.optim.Adam(model, lr=0.05)
    sched = getattr(xn.optim.schedules, schedule)(opt, **settings)
    for _ in range(3):
        _fit(model, loss, opt, schedule=sched)
    interrupted = _model(device)
    opt = xn.optim.Adam(interrupted, lr=0.05)
    sched = getattr(xn.optim.schedules, schedule)(opt, **settings)
    _fit(interrupted, loss, opt, schedule=sched)
    xn.save(interrupted, tmp_path / "c.npz", optimizer=opt, schedule=sched)
    resumed = _model(device)
    opt = xn.optim.Adam(resumed, lr=0.05)
    sched = getattr(xn.optim.schedules, schedule)(opt, **settings)
    xn.load(resumed, tmp_path / "c.npz", optimizer=opt, schedule=sched)
    assert sched.epoch == 1
    for _ in range(2):
        _fit(resumed, loss, opt, schedule=sched)
    _assert_identical(_weights(resumed), _weights(model))


def test_a_schedule_is_saved_and_loaded_only_with_its_optimizer(tmp_path):
    model = _model("cpu")
    opt = xn.optim.SGD(model, lr=0.1)
    sched = xn.optim.schedules.StepDecay(opt, step_size=2)
    with pytest.raises(ValueError, match=r"schedule=StepDecay .* no optimizer= was given. Pass that optimizer"):
        xn.save(model, tmp_path / "c.npz", schedule=sched)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    with pytest.raises(xn.CheckpointError, match="holds no schedule state"):
        xn.load(model, tmp_path / "c.npz", optimizer=opt, schedule=sched)
    xn.save(model, tmp_path / "c.npz", optimizer=opt, schedule=sched)
    with pytest.raises(xn.CheckpointError, match="holds StepDecay schedule state, not Cosine"):
        xn.load(model, tmp_path / "c.npz", optimizer=opt, schedule=xn.optim.schedules.Cosine(opt, epochs=3))


# -- cases 18 and 19: training goes on after a device move or a checkpoint ----------------
@pytest.mark.parametrize("move", ["fit(device=)", "model.to"])
@pytest.mark.parametrize("first, second", MOVES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_training_goes_on_after_a_device_move_as_if_it_had_not_moved(name, first, second, move):
    loss = xn.nn.SoftmaxCrossEntropy()  # the same loss object throughout, as a script has it
    staying = _model(first)
    opt = _optimizer(name, staying)
    _fit(staying, loss, opt)
    _fit(staying, loss, opt)
    moving = _model(first)
    opt = _optimizer(name, moving)
    _fit(moving, loss, opt)
    if move == "model.to":
        moving.to(second)
        _fit(moving, loss, opt)
    else:
        _fit(moving, loss, opt, device=second)
    assert moving.device == xn.Device(second)
    assert all(xn.device_of(a) == xn.Device(second) for s in opt.state.values() for a in s.values())
    _assert_identical(_weights(moving), _weights(staying))
    assert opt.t == 8


@pytest.mark.parametrize("first, second", MOVES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_training_resumed_from_a_checkpoint_on_another_device_equals_the_uninterrupted_run(
        name, first, second, tmp_path):
    loss = xn.nn.SoftmaxCrossEntropy()
    model = _model(first)
    opt = _optimizer(name, model)
    _fit(model, loss, opt)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    _fit(model, loss, opt)
    resumed = _model(second)
    again = _optimizer(name, resumed)
    xn.load(resumed, tmp_path / "c.npz", optimizer=again)
    _fit(resumed, loss, again)
    _assert_identical(_weights(resumed), _weights(model))


# -- case 24: values out of range are refused at load ----------------------------------------
def _set_t(value):
    def change(arrays, meta):
        meta["optimizer"]["t"] = value
    return change


def _negative(key):
    def change(arrays, meta):
        arrays[key] = arrays[key].copy()
        arrays[key].flat[0] = -1e-3
    return change


def _set(field, value):
    def change(arrays, meta):
        meta["optimizer"][field] = value
    return change


BAD = {
    "t is 2**70": ("Adam", _set_t(2 ** 70), r"step count 't' is 1180591620717411303424; expected a whole number "
                                            r"from 0 to 2\*\*53"),
    "Adam v negative": ("Adam", _negative("optim/0.W/v"), r"'0.W/v' holds negative values \(smallest -0.001"),
    "AdaGrad h negative": ("AdaGrad", _negative("optim/2.b/h"), "'2.b/h' holds negative values"),
    "RMSProp h negative": ("RMSProp", _negative("optim/0.b/h"), "'0.b/h' holds negative values"),
    "lr negative": ("SGD", _set("lr", -0.1), "'lr' is -0.1, but it is never negative"),
    "lr is text": ("SGD", _set("lr", "fast"), "'lr' is 'fast', not a number"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_checkpoint_with_values_out_of_range_is_refused_and_changes_nothing(device, tmp_path, case):
    name, change, match = BAD[case]
    model = _model(device)
    opt = _optimizer(name, model)
    _fit(model, xn.nn.SoftmaxCrossEntropy(), opt)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    _rewrite(tmp_path / "c.npz", change)
    fresh = _model(device)
    again = _optimizer(name, fresh)
    before = _weights(fresh)
    with pytest.raises(xn.CheckpointError, match=match):
        xn.load(fresh, tmp_path / "c.npz", optimizer=again)
    _assert_identical(_weights(fresh), before)
    assert again.t == 0 and again.lr == 0.05


def test_momentums_velocity_may_be_negative(tmp_path):
    model = _model("cpu")
    opt = xn.optim.Momentum(model, lr=0.05)
    _fit(model, xn.nn.SoftmaxCrossEntropy(), opt)
    assert any((v < 0).any() for s in xn.to_host(opt.state).values() for v in s.values())
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    xn.load(_model("cpu"), tmp_path / "c.npz")  # a velocity is not a sum of squares


# -- case 29: eps = 0 is accepted, as PyTorch accepts it --------------------------------------
@pytest.mark.parametrize("name", ["AdaGrad", "RMSProp", "Adam", "AdamW"])
def test_eps_zero_is_accepted_and_steps_by_the_sign_of_the_gradient(device, name):
    """With eps = 0 the first step of each is lr * sign(g) / c, a closed form: AdaGrad c = 1,
    RMSProp c = sqrt(1 - decay), Adam and AdamW (without decay) c = 1."""
    layer = _model(device, dtype="float64").layers[0]
    start = _weights(layer)
    rng = numpy.random.default_rng(3)
    grads = {k: rng.standard_normal(v.shape) for k, v in start.items()}  # no zero: 0 / 0 is NaN, as in PyTorch
    for k, g in grads.items():
        layer.grads()[k][...] = xn.to_device(g, device)
    extra = {"weight_decay": 0.0} if name == "AdamW" else {}
    opt = getattr(xn.optim, name)(layer, lr=0.1, eps=0, **extra)
    opt.step()
    c = numpy.sqrt(1 - 0.99) if name == "RMSProp" else 1.0
    for k, value in _weights(layer).items():
        numpy.testing.assert_allclose(value, start[k] - 0.1 * numpy.sign(grads[k]) / c, rtol=1e-12, err_msg=k)
    with pytest.raises(ValueError, match=r"eps must be a finite number in \[0, inf\), got -1"):
        getattr(xn.optim, name)(layer, eps=-1)


# -- case 30: an optimizer with a running scalar, written only through the public slot -------
def test_the_contributors_guide_runs_and_its_nadam_follows_pytorchs_formula():
    Nadam = _guide()["Nadam"]
    layer = _model("cpu", dtype="float64").layers[0]
    p = _weights(layer)["W"]
    opt = Nadam(layer, lr=0.1)
    grads = numpy.random.default_rng(1).standard_normal((5,) + p.shape)
    m, v, product = numpy.zeros_like(p), numpy.zeros_like(p), 1.0
    b1, b2, eps, psi, lr = 0.9, 0.999, 1e-8, 0.004, 0.1
    for step, g in enumerate(grads, 1):  # torch.optim.NAdam's single-tensor update, written out
        layer.grads()["W"][...] = g
        opt.step()
        mu, mu_next = (b1 * (1 - 0.5 * 0.96 ** (k * psi)) for k in (step, step + 1))
        product *= mu
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        denominator = numpy.sqrt(v / (1 - b2 ** step)) + eps
        p = (p - lr * (1 - mu) / (1 - product) * g / denominator
             - lr * mu_next / (1 - product * mu_next) * m / denominator)
    numpy.testing.assert_allclose(_weights(layer)["W"], p, rtol=1e-13)  # float64 rounding only
    assert opt.scalars["mu_product"] == pytest.approx(product, rel=1e-14)


def test_an_optimizer_with_scalar_state_saves_loads_and_resumes_bit_for_bit(device, tmp_path):
    Nadam = _guide()["Nadam"]
    loss = xn.nn.SoftmaxCrossEntropy()
    model = _model(device)
    opt = Nadam(model, lr=0.01)
    _fit(model, loss, opt)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    saved = opt.scalars["mu_product"]
    assert saved < 1  # it ran
    _fit(model, loss, opt)
    resumed = _model(device)
    again = Nadam(resumed, lr=0.01)
    xn.load(resumed, tmp_path / "c.npz", optimizer=again)
    assert again.scalars == {"mu_product": saved} and again.t == 4
    _fit(resumed, loss, again)
    _assert_identical(_weights(resumed), _weights(model))
    assert again.scalars == opt.scalars


@pytest.mark.parametrize("first, second", MOVES)
def test_an_optimizers_scalar_state_follows_a_device_move(first, second):
    Nadam = _guide()["Nadam"]
    loss = xn.nn.SoftmaxCrossEntropy()
    staying, moving = _model(first), _model(first)
    opts = Nadam(staying, lr=0.01), Nadam(moving, lr=0.01)
    _fit(staying, loss, opts[0])
    _fit(staying, loss, opts[0])
    _fit(moving, loss, opts[1])
    _fit(moving, loss, opts[1], device=second)
    _assert_identical(_weights(moving), _weights(staying))
    assert opts[1].scalars == opts[0].scalars


def _nan_at_mark(xb, tb):
    """fit's transform: the host data holds a finite marker (fit refuses NaN in host data up
    front), which becomes NaN on the device, inside the step, so the loss turns NaN there."""
    return xn.device_of(xb).xp.where(xb == 1e30, numpy.nan, xb), tb


def test_the_nan_rollback_restores_an_optimizers_scalar_state(device):
    """fit stops at a NaN loss and rolls the model and the optimizer back to the last check
    with finite losses: the scalar state too, with nothing written for it in the optimizer."""
    Nadam = _guide()["Nadam"]
    loss = xn.nn.SoftmaxCrossEntropy()
    x, t = _data()
    good = [(x[i:i + 10], t[i:i + 10]) for i in range(0, 30, 10)]
    bad = (numpy.full((10, 4), 1e30), t[:10])  # NaN on the device (host NaN is refused up front)
    clean = _model(device)
    reference = Nadam(clean, lr=0.01)
    _fit(clean, loss, reference, data=good)
    model = _model(device)
    opt = Nadam(model, lr=0.01)
    with pytest.raises(xn.TrainingError, match="restored"):  # fewer than 10 steps: checked after every step
        xn.fit(model, loss, opt, good + [bad], batch_size=10, seed=1, transform=_nan_at_mark)
    assert opt.t == 3 and opt.scalars == reference.scalars
    _assert_identical(_weights(model), _weights(clean))
    _fit(model, loss, opt, data=good)
    _fit(clean, loss, reference, data=good)
    _assert_identical(_weights(model), _weights(clean))


def test_a_checkpoint_without_the_declared_scalar_state_is_refused(tmp_path):
    Nadam = _guide()["Nadam"]
    model = _model("cpu")
    opt = Nadam(model, lr=0.01)
    _fit(model, xn.nn.SoftmaxCrossEntropy(), opt)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    _rewrite(tmp_path / "c.npz", lambda arrays, meta: meta["optimizer"].pop("scalars"))
    with pytest.raises(xn.CheckpointError, match="missing scalar state 'mu_product'"):
        xn.load(model, tmp_path / "c.npz", optimizer=Nadam(model))
    _rewrite(tmp_path / "c.npz", lambda arrays, meta: meta["optimizer"].update(scalars={"mu_product": "x"}))
    with pytest.raises(xn.CheckpointError, match="'mu_product' is 'x', not a number"):
        xn.load(model, tmp_path / "c.npz", optimizer=Nadam(model))
