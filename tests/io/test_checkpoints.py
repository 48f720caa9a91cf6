"""Issue 16, checkpoints (cases 15-17): all or nothing, and no side effects."""
import json
import os
import stat
import subprocess
import sys

import numpy
import pytest

import xpnet as xn


def _model():
    xn.seed(1)
    return xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.BatchNorm(3), xn.nn.ReLU(), xn.nn.Affine(3, 2))


def _trained(device, steps=2):
    model = _model()
    opt = xn.optim.Adam(model, lr=0.01)
    x, t = xn.to_device((numpy.linspace(-1, 1, 32, dtype=numpy.float32).reshape(8, 4), numpy.arange(8) % 2))
    loss = xn.nn.SoftmaxCrossEntropy()
    for _ in range(steps):
        loss(model(x), t)
        model.backward(loss.backward())
        opt.step()
    return model, opt


def _rewrite(path, change):
    """Load the checkpoint's arrays and record, let ``change(arrays, meta)`` edit them, save back."""
    with numpy.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__xpnet__")))
    meta = change(arrays, meta) or meta
    numpy.savez(path, __xpnet__=numpy.array(json.dumps(meta)), **arrays)


def _snapshot(model, opt):
    return ({k: v.copy() for k, v in xn.to_host(model.params()).items()}, opt.t,
            {n: {k: v.copy() for k, v in s.items()} for n, s in xn.to_host(opt.state).items()})


def _unchanged(model, opt, before):
    params, t, state = before
    assert opt.t == t
    for name, value in xn.to_host(model.params()).items():
        numpy.testing.assert_array_equal(value, params[name])
    for name, slots in xn.to_host(opt.state).items():
        for key, value in slots.items():
            numpy.testing.assert_array_equal(value, state[name][key])


def _set_t(value):
    def change(arrays, meta):
        meta["optimizer"]["t"] = value
    return change


def _drop(key):
    def change(arrays, meta):
        del arrays[key]
    return change


def _reshape(key):
    def change(arrays, meta):
        arrays[key] = numpy.zeros(arrays[key].shape + (1,), arrays[key].dtype)
    return change


def _retype(key):
    def change(arrays, meta):
        arrays[key] = arrays[key].astype(numpy.float64)
    return change


def _nan(key):
    def change(arrays, meta):
        arrays[key] = arrays[key].copy()
        arrays[key].flat[0] = numpy.nan
    return change


def _extra(arrays, meta):
    arrays["optim/9.W/m"] = numpy.zeros(3, numpy.float32)


def _meta_is(value):
    return lambda arrays, meta: value


def _optimizer_is(value):
    def change(arrays, meta):
        meta["optimizer"] = value
    return change


def _no_t(arrays, meta):
    del meta["optimizer"]["t"]


# case 15: every part validated before anything is written; case 17: a named CheckpointError
BAD = {
    "t is text": (_set_t("abc"), "step count 't' is 'abc'"),
    "t is negative": (_set_t(-1), "step count 't' is -1"),
    "t is missing": (_no_t, "step count 't' is None"),
    "state missing": (_drop("optim/0.W/m"), r"missing '0.W/m'.*optimizer=None"),
    "state of another shape": (_reshape("optim/3.b/v"), r"'3.b/v' has shape \(2, 1\)"),
    "state of another dtype": (_retype("optim/1.gamma/m"), "'1.gamma/m' is float64"),
    "state from another model": (_extra, r"optimizer state the model lacks: \['9.W/m'\]"),
    "NaN weights": (_nan("param/0.W"), "'0.W' holds NaN"),
    "NaN buffer": (_nan("buffer/1.running_var"), "'1.running_var' holds NaN"),
    "NaN optimizer state": (_nan("optim/0.b/v"), "'0.b/v' holds NaN"),
    "metadata is a list": (_meta_is([1, 2]), "JSON list, not an object"),
    "optimizer is a string": (_optimizer_is("Adam"), "'optimizer' field is a str"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_checkpoint_changes_nothing(device, tmp_path, case):
    change, match = BAD[case]
    model, opt = _trained(device)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    _rewrite(tmp_path / "c.npz", change)
    model2, opt2 = _trained(device, steps=1)
    before = _snapshot(model2, opt2)
    with pytest.raises(xn.CheckpointError, match=match):
        xn.load(model2, tmp_path / "c.npz", optimizer=opt2)
    _unchanged(model2, opt2, before)


def test_optimizer_state_can_be_skipped_on_purpose(device, tmp_path):
    model, opt = _trained(device)
    xn.save(model, tmp_path / "c.npz", optimizer=opt)
    _rewrite(tmp_path / "c.npz", _drop("optim/0.W/m"))
    fresh = _model()
    xn.load(fresh, tmp_path / "c.npz")  # weights only
    for name, value in xn.to_host(fresh.params()).items():
        numpy.testing.assert_array_equal(value, xn.to_host(model.params()[name]))


def test_an_optimizer_saved_before_its_first_step_loads(device, tmp_path):
    model = _model()
    xn.save(model, tmp_path / "c.npz", optimizer=xn.optim.Adam(model))
    opt = xn.optim.Adam(model)
    xn.load(model, tmp_path / "c.npz", optimizer=opt)
    assert opt.t == 0


# case 16: save keeps the file's mode, writes through a symlink, cleans up after a kill
def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "c.npz"
    xn.save(_model(), path)
    os.chmod(path, 0o640)
    xn.save(_model(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_new_checkpoint_gets_the_umask_default(tmp_path):
    umask = os.umask(0o022)
    try:
        xn.save(_model(), tmp_path / "new.npz")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.npz").stat().st_mode) == 0o644


def test_save_writes_through_a_symlink(tmp_path):
    real = tmp_path / "store" / "c.npz"
    real.parent.mkdir()
    xn.save(_model(), real)
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    model, opt = _trained("cpu")
    xn.save(model, link, optimizer=opt)
    assert link.is_symlink() and os.path.realpath(link) == str(real)
    fresh = _model()
    xn.load(fresh, real)
    numpy.testing.assert_array_equal(xn.to_host(fresh.params()["0.W"]), xn.to_host(model.params()["0.W"]))
    assert sorted(p.name for p in real.parent.iterdir()) == ["c.npz"]


def test_a_killed_save_leaves_nothing_after_the_next_save(tmp_path):
    path = tmp_path / "c.npz"
    script = (f"import os, numpy, xpnet as xn\n"
              f"real = numpy.savez\n"
              f"def die(f, **a):\n    real(f, **a); f.flush(); os._exit(9)\n"
              f"numpy.savez = die\n"
              f"xn.save(xn.nn.Affine(300, 300), {str(path)!r})\n")
    for _ in range(2):  # each killed save leaves its temporary and removes the one before
        assert subprocess.run([sys.executable, "-c", script]).returncode == 9
        assert len(list(tmp_path.glob(".c.npz.*.tmp"))) == 1 and not path.exists()
    xn.save(_model(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
