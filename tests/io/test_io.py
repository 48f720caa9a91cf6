import numpy
import pytest

import xpnet as xn


def _model():
    xn.seed(1)
    return xn.nn.Sequential(xn.nn.Affine(6, 5), xn.nn.BatchNorm(5), xn.nn.ReLU(), xn.nn.Affine(5, 3))


def _train_steps(model, opt, x, t, n):
    loss = xn.nn.SoftmaxCrossEntropy()
    for _ in range(n):
        loss(model(x), t)
        model.backward(loss.backward())
        opt.step()


def test_save_on_sim_load_on_cpu_gives_identical_outputs(tmp_path, rng):
    x = rng.standard_normal((8, 6)).astype(numpy.float32)
    t = numpy.arange(8) % 3
    with xn.use_device("sim"):
        model = _model()
        _train_steps(model, xn.optim.SGD(model, lr=0.1), *xn.to_device((x, t)), 3)
        model.eval()
        expected = xn.to_host(model(xn.to_device(x)))
        xn.save(model, tmp_path / "m.npz")
        assert model.device == xn.Device("sim")  # saving never moves the model
    with xn.use_device("cpu"):
        fresh = _model().eval()
        fresh.set_params({"0.W": numpy.zeros((6, 5), dtype=numpy.float32)})
        xn.load(fresh, tmp_path / "m.npz")
        numpy.testing.assert_array_equal(fresh(x), expected)


def test_training_resumes_exactly_with_optimizer_state(tmp_path, device, rng):
    x, t = xn.to_device((rng.standard_normal((8, 6)).astype(numpy.float32), numpy.arange(8) % 3), device)
    model = _model()
    opt = xn.optim.Adam(model, lr=0.01)
    _train_steps(model, opt, x, t, 3)
    xn.save(model, tmp_path / "ckpt.npz", optimizer=opt)
    _train_steps(model, opt, x, t, 2)
    straight = xn.to_host(model.params())

    resumed = _model()
    opt2 = xn.optim.Adam(resumed, lr=0.01)
    xn.load(resumed, tmp_path / "ckpt.npz", optimizer=opt2)
    assert opt2.t == 3
    _train_steps(resumed, opt2, x, t, 2)
    for name, value in xn.to_host(resumed.params()).items():
        numpy.testing.assert_array_equal(value, straight[name])


def test_file_records_names_dtypes_and_device(tmp_path):
    with xn.use_device("sim"):
        xn.save(_model(), tmp_path / "m.npz")
    import json
    with numpy.load(tmp_path / "m.npz", allow_pickle=False) as f:
        meta = json.loads(str(f["__xpnet__"]))
        assert f["param/0.W"].dtype == numpy.float32
    assert meta["device"] == "sim:0" and meta["params"]["0.W"] == {"shape": [6, 5], "dtype": "float32"}
    assert "0.running_mean" not in meta["params"] and "1.running_mean" in meta["buffers"]


def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = _model()
    xn.save(model, path)
    old = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(numpy, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        xn.save(model, path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_xpnet", "wrong_shape", "missing_key"])
def test_bad_files_are_refused_and_the_model_left_unchanged(tmp_path, damage):
    path = tmp_path / "m.npz"
    xn.save(_model(), path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a zip at all" * 10)
    elif damage == "not_xpnet":
        numpy.savez(path, W=numpy.ones(3))
    else:
        other = xn.nn.Sequential(xn.nn.Affine(6, 4), xn.nn.BatchNorm(4), xn.nn.ReLU(), xn.nn.Affine(4, 3)) \
            if damage == "wrong_shape" else xn.nn.Sequential(xn.nn.Affine(6, 5))
        xn.save(other, path)
    model = _model()
    before = xn.to_host(model.params())
    before = {k: v.copy() for k, v in before.items()}
    expected = {"truncated": "truncated", "garbage": "not a readable", "not_xpnet": "not an xpnet checkpoint",
                "wrong_shape": r"'0.W' has shape \(6, 4\) in the file, \(6, 5\) in the model",
                "missing_key": "missing '1.gamma'"}[damage]
    with pytest.raises(xn.CheckpointError, match=expected):
        xn.load(model, path)
    for name, value in xn.to_host(model.params()).items():
        numpy.testing.assert_array_equal(value, before[name])


def test_loading_optimizer_state_that_is_not_there_is_refused(tmp_path):
    model = _model()
    xn.save(model, tmp_path / "m.npz")
    with pytest.raises(xn.CheckpointError, match="no optimizer state"):
        xn.load(model, tmp_path / "m.npz", optimizer=xn.optim.Adam(model))
    xn.save(model, tmp_path / "m.npz", optimizer=xn.optim.SGD(model, lr=0.1))
    with pytest.raises(xn.CheckpointError, match="SGD state, not Adam"):
        xn.load(model, tmp_path / "m.npz", optimizer=xn.optim.Adam(model))
