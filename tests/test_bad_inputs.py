"""The minor findings of the hostile pass: abs/maximum/minimum/clip/min of traced values,
non-finite values given to set_params and to fit/evaluate/predict, ModelCheckpoint paths
that cannot work, and examples' numeric options that are not numbers they can use."""
import numpy
import pytest

import xpnet as xn
from tests.helpers import numerical_grad, relative_error
from xpnet import autodiff as ad


# -- 12: abs, maximum, minimum, clip, min of traced values --------------------------------
def test_abs_of_a_traced_value_has_the_sign_as_gradient(device):
    x = xn.to_device(numpy.array([1.5, -2.0, 0.0, 0.25], dtype=numpy.float32))
    for f in (lambda t: abs(t).sum(), lambda t: numpy.abs(t).sum(), lambda t: (abs(t) * t).sum()):
        g = ad.grad(f)(x)
        assert g.dtype == numpy.float32
    numpy.testing.assert_array_equal(xn.to_host(ad.grad(lambda t: abs(t).sum())(x)), [1, -1, 0, 1])  # 0 at 0
    numpy.testing.assert_array_equal(xn.to_host(ad.grad(lambda t: numpy.abs(t).sum())(x)), [1, -1, 0, 1])
    # d/dx (|x| x) = 2 |x|
    numpy.testing.assert_allclose(xn.to_host(ad.grad(lambda t: (abs(t) * t).sum())(x)), [3, 4, 0, 0.5])


def test_abs_gradient_matches_finite_differences(device):
    x = numpy.array([[0.7, -1.3], [2.1, -0.4]])
    analytic = xn.to_host(ad.grad(lambda t: (abs(t) ** 3).sum())(xn.to_device(x)))
    numeric = numerical_grad(lambda: (numpy.abs(x) ** 3).sum(), x)
    assert relative_error(analytic, numeric) < 1e-6


def test_maximum_minimum_clip_min_of_traced_values(device):
    x = xn.to_device(numpy.array([1.0, -2.0, 0.0, 0.5], dtype=numpy.float32))
    grad = lambda f: xn.to_host(ad.grad(f)(x))
    # ties share the gradient equally, as PyTorch's maximum/minimum
    numpy.testing.assert_array_equal(grad(lambda t: numpy.maximum(t, 0).sum()), [1, 0, 0.5, 1])
    numpy.testing.assert_array_equal(grad(lambda t: numpy.minimum(t, 0.5).sum()), [0, 1, 1, 0.5])
    # clip passes the gradient where low <= x <= high, as PyTorch's clamp
    numpy.testing.assert_array_equal(grad(lambda t: numpy.clip(t, -1, 0.5).sum()), [0, 0, 1, 1])
    numpy.testing.assert_array_equal(grad(lambda t: t.clip(max=0.0).sum()), [0, 1, 1, 0])
    numpy.testing.assert_array_equal(grad(lambda t: numpy.min(t)), [0, 1, 0, 0])
    numpy.testing.assert_array_equal(grad(lambda t: (t * 3).min()), [0, 3, 0, 0])
    assert float(xn.to_host(ad.grad(lambda t: numpy.maximum(t, 0).sum())(x).sum())) == 2.5
    assert ad.grad(lambda t: numpy.maximum(t, 0).sum())(x).dtype == numpy.float32  # a number keeps the dtype


def test_an_unsupported_ufunc_is_refused_with_the_supported_list(device):
    x = xn.to_device(numpy.array([1.0, -2.0]))
    with pytest.raises(TypeError, match=r"numpy\.sin.*abs.*maximum.*clip"):
        ad.grad(lambda t: numpy.sin(t).sum())(x)


# -- 7: set_params refuses what save and load refuse ----------------------------------------
def _small_model():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(3, 4), xn.nn.BatchNorm(4), xn.nn.ReLU(), xn.nn.Affine(4, 2))


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
@pytest.mark.parametrize("on_device", [False, True])
def test_set_params_refuses_non_finite_weights_and_writes_nothing(device, bad, on_device):
    model = _small_model()
    before = {k: v.copy() for k, v in xn.to_host(model.params()).items()}
    value = numpy.ones((3, 4), dtype=numpy.float32)
    value[1, 2] = bad
    good = numpy.zeros(2, dtype=numpy.float32)
    given = {"3.b": good, "0.W": xn.to_device(value) if on_device else value}
    with pytest.raises(ValueError, match=r"'0\.W' holds NaN or infinite values \(weights must be finite\)"):
        model.set_params(given)
    for k, v in xn.to_host(model.params()).items():
        numpy.testing.assert_array_equal(v, before[k])  # not even 3.b was written


def test_set_params_overflowing_to_inf_in_the_parameter_dtype_is_refused(device):
    model = _small_model()
    with pytest.raises(ValueError, match="0.W"):
        model.set_params({"0.W": numpy.full((3, 4), 1e300)})  # float64, inf as float32


def test_set_params_buffers_follow_loads_rule(device):
    model = _small_model()
    names = sorted(model.buffers())
    mean = next(n for n in names if n.endswith("running_mean"))
    var = next(n for n in names if n.endswith("running_var"))
    model.set_params({mean: numpy.full(4, numpy.inf, dtype=numpy.float32)})  # +-inf allowed, as load
    assert numpy.isinf(xn.to_host(model.buffers()[mean])).all()
    with pytest.raises(ValueError, match=r"holds NaN \(buffers may hold \+-inf, never NaN\)"):
        model.set_params({mean: numpy.full(4, numpy.nan, dtype=numpy.float32)})
    with pytest.raises(ValueError, match="holds negative values"):
        model.set_params({var: xn.to_device(numpy.full(4, -1.0, dtype=numpy.float32))})
    model.set_params({var: numpy.full(4, 2.0, dtype=numpy.float32)})  # a fit value is written
    numpy.testing.assert_array_equal(xn.to_host(model.buffers()[var]), 2.0)


# -- 6 and 8: non-finite data given to fit, evaluate and predict ----------------------------
def _data(bad=None, where=(3, 1), rows=10):
    rng = numpy.random.default_rng(9)
    x = rng.standard_normal((rows, 3)).astype(numpy.float32)
    t = rng.integers(0, 2, rows)
    if bad is not None:
        x[where] = bad
    return x, t


def _mlp():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(3, 4), xn.nn.ReLU(), xn.nn.Affine(4, 2))


def _fit(model, data, **kw):
    return xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), data, epochs=1,
                  batch_size=4, progress=False, **kw)


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_evaluate_refuses_host_data_that_is_not_finite(device, bad):
    model = _mlp()
    with pytest.raises(ValueError, match=r"evaluate data: x holds (nan|inf|-inf) at position \(3, 1\)"):
        xn.evaluate(model, _data(bad))
    x, t = _data(bad, (5, 2))
    batches = [(x[:4], t[:4]), (x[4:], t[4:])]  # a list of batches: the second holds the bad value
    with pytest.raises(ValueError, match=r"evaluate data, batch 1: x holds .* at position \(1, 2\)"):
        xn.evaluate(model, batches)


@pytest.mark.parametrize("stream", [False, True])
def test_fit_refuses_host_data_that_is_not_finite_before_any_step(device, stream):
    model = _mlp()
    before = {k: v.copy() for k, v in xn.to_host(model.params()).items()}
    with pytest.raises(ValueError, match=r"fit data: x holds nan at position \(3, 1\) \(sample 3\)"):
        _fit(model, _data(numpy.nan), stream=stream)
    for k, v in xn.to_host(model.params()).items():
        numpy.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"validation: x holds inf at position \(7, 0\)"):
        _fit(model, _data(), validation=_data(numpy.inf, (7, 0)))
    loader = xn.data.Loader(*_data(numpy.nan, (9, 2)), batch_size=4, shuffle=False)
    with pytest.raises(ValueError, match=r"fit data, batch 2: x holds nan at position \(1, 2\)"):
        _fit(model, loader)


def test_fit_refuses_regression_targets_that_are_not_finite(device):
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(3, 1))
    x = numpy.ones((6, 3), dtype=numpy.float32)
    t = numpy.zeros((6, 1), dtype=numpy.float32)
    t[4, 0] = numpy.nan
    with pytest.raises(ValueError, match=r"fit data: t holds nan at position \(4, 0\)"):
        xn.fit(model, xn.nn.MeanSquaredError(), xn.optim.SGD(model, lr=0.1), (x, t), progress=False)


def test_predict_refuses_host_input_that_is_not_finite(device):
    model = _mlp()
    x = _data(numpy.nan, (6, 0))[0]
    with pytest.raises(ValueError, match=r"predict input holds nan at position \(6, 0\)"):
        xn.predict(model, x, batch_size=4)
    with pytest.raises(ValueError, match=r"predict input, batch 1 holds nan at position \(2, 0\)"):
        xn.predict(model, [x[:4], x[4:]])


def test_evaluate_reports_no_accuracy_from_outputs_that_are_not_finite(device):
    model = _mlp()
    clean = xn.evaluate(model, _data())
    assert 0.0 <= clean["accuracy"] <= 1.0  # finite outputs: an accuracy as before
    model.params()["2.W"][0, 1] = numpy.nan  # the live array: outputs NaN (data on a device is not read)
    result = xn.evaluate(model, xn.to_device(_data()))
    assert numpy.isnan(result["loss"]) and numpy.isnan(result["accuracy"])


def test_finite_data_is_not_refused(device):
    model = _mlp()
    x, t = _data()
    t_soft = numpy.eye(2, dtype=numpy.float32)[t]
    _fit(model, (x, t))
    _fit(model, (x, t_soft))
    assert numpy.isfinite(xn.evaluate(model, (x, t))["loss"])
    assert xn.to_host(xn.predict(model, x)).shape == (10, 2)


# -- 9: ModelCheckpoint paths that could not be written are refused before the first step ----
def _fit_with(callback, model=None, **kw):
    model = _mlp() if model is None else model
    return _fit(model, _data(rows=12), callbacks=[callback], **kw)


def test_checkpoint_template_with_val_fields_needs_validation(device, tmp_path):
    model = _mlp()
    before = {k: v.copy() for k, v in xn.to_host(model.params()).items()}
    cb = xn.callbacks.ModelCheckpoint(tmp_path / "c-{val_loss:.3f}.npz", monitor="loss")
    with pytest.raises(ValueError, match=r"\{val_loss\}.*no validation=.*validation=\(x_val, t_val\)"):
        _fit_with(cb, model)
    for k, v in xn.to_host(model.params()).items():  # refused before the first step
        numpy.testing.assert_array_equal(v, before[k])
    assert list(tmp_path.iterdir()) == []
    _fit_with(cb, validation=_data(rows=6))  # with validation the same template works
    assert len(cb.saved) == 1 and cb.saved[0].exists() and cb.saved[0].name.startswith("c-")


def test_checkpoint_template_field_no_epoch_has_is_named(device, tmp_path):
    cb = xn.callbacks.ModelCheckpoint(tmp_path / "c-{val_los}.npz", monitor="loss")
    with pytest.raises(ValueError, match=r"\{val_los\}.*no validation="):
        _fit_with(cb)
    cb = xn.callbacks.ModelCheckpoint(tmp_path / "c-{los}.npz", monitor="loss")  # a callback might add it
    with pytest.raises(ValueError, match=r"\{los\}.*not among epoch 1's figures.*'loss'"):
        _fit_with(cb)
    cb = xn.callbacks.ModelCheckpoint(tmp_path / "c-{}.npz", monitor="loss")
    with pytest.raises(ValueError, match=r"field without a name"):
        _fit_with(cb)
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(3, 1))
    cb = xn.callbacks.ModelCheckpoint(tmp_path / "c-{accuracy:.2f}.npz", monitor="loss")
    with pytest.raises(ValueError, match=r"MeanSquaredError is not a classification loss"):
        xn.fit(model, xn.nn.MeanSquaredError(), xn.optim.SGD(model, lr=0.1),
               (numpy.ones((4, 3), numpy.float32), numpy.ones((4, 1), numpy.float32)), callbacks=[cb],
               progress=False)


def test_checkpoint_into_a_missing_folder_is_refused_naming_it(device, tmp_path):
    missing = tmp_path / "nope"
    cb = xn.callbacks.ModelCheckpoint(missing / "c.npz", monitor="loss")
    with pytest.raises(FileNotFoundError, match=r"folder '.*nope' of .* does not exist; create it first"):
        _fit_with(cb)
    cb = xn.callbacks.ModelCheckpoint(str(tmp_path / "run-{epoch}" / "c.npz"), monitor="loss")
    with pytest.raises(FileNotFoundError, match=r"folder '.*run-1' of .* does not exist"):
        _fit_with(cb)  # a folder made of fields is checked when it is known, before writing
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    missing.mkdir()
    cb = xn.callbacks.ModelCheckpoint(missing / "c.npz", monitor="loss")
    _fit_with(cb)
    assert (missing / "c.npz").exists()


# -- 10: the examples' numeric options are checked by argparse: exit 2, one line ------------
def _usage_error(*args):
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {k: v for k, v in os.environ.items() if k != "XPNET_DEVICE"}
    result = subprocess.run([sys.executable, "-m", "xpnet", "train", *args], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, env=env, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (("mnist_mlp", "--lr", "nan"), ("--lr", "'nan' is not a finite number")),
    (("mnist_mlp", "--lr", "-1"), ("--lr", "-1.0 is not positive")),
    (("mnist_mlp", "--dropout", "1.5"), ("--dropout", "1.5 is outside [0, 1)")),
    (("mnist_mlp", "--seed", "-2"), ("--seed", "-2 is negative")),
    (("mnist_cnn", "--lr", "0"), ("--lr", "not positive")),
    (("mnist_autodiff", "--lr", "fast"), ("--lr", "'fast' is not a number")),
    (("exp_regression", "--lr", "inf"), ("--lr", "not a finite number")),
    (("mnist_speedrun", "--label-smoothing", "1"), ("--label-smoothing", "outside [0, 1)")),
    (("mnist_speedrun", "--shift", "-1"), ("--shift", "negative")),
    (("mnist_onnx", "--seed", "x"), ("--seed", "not a whole number")),
])
def test_bad_numbers_for_an_examples_options_are_usage_errors(args, words):
    line = _usage_error(*args)
    for word in words:
        assert word in line, line


def test_numeric_argument_types():
    import argparse

    from xpnet.cli import nonnegative_int, positive_float, probability
    assert positive_float("0.01") == 0.01 and probability("0") == 0.0 and probability("0.5") == 0.5
    assert nonnegative_int("0") == 0
    for fn, text in [(positive_float, "-inf"), (positive_float, "0"), (probability, "1"), (probability, "-0.1"),
                     (probability, "nan"), (nonnegative_int, "1.5"), (nonnegative_int, "-1")]:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text).strip("'")):
            fn(text)


# -- paths and files a prober named (session 5): each error named a hidden temporary file or
# -- came from NumPy, instead of the path given and what to do
def test_save_names_a_missing_folder_or_a_folder_given_as_the_file(tmp_path):
    model = xn.nn.Affine(2, 2)
    with pytest.raises(FileNotFoundError, match=r"cannot write .*nope.m\.npz: the folder .*nope does not exist\. "
                                                r"Create it first"):
        xn.save(model, tmp_path / "nope" / "m.npz")
    with pytest.raises(IsADirectoryError, match=r"cannot write .*: it is a folder"):
        xn.save(model, tmp_path)
    with pytest.raises(IsADirectoryError, match=r"it is a folder"):
        xn.export_onnx(model, tmp_path, numpy.ones((1, 2), numpy.float32))
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_load_of_an_npy_file_says_it_is_one_array_not_a_checkpoint(tmp_path):
    numpy.save(tmp_path / "a.npy", numpy.ones(3))
    with pytest.raises(xn.CheckpointError, match=r"a\.npy holds one NumPy array \(an \.npy file\), not an xpnet "
                                                 r"checkpoint"):
        xn.load(xn.nn.Affine(2, 2), tmp_path / "a.npy")


def test_a_data_dir_that_is_a_file_is_named_as_one(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("not a folder")
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "f"))
    with pytest.raises(NotADirectoryError, match=r"is a file, not a folder\. Set XPNET_DATA_DIR to a folder"):
        xn.datasets.mnist()


def test_onnx_names_a_sequential_subclass_it_refuses_by_its_own_class():
    class Doubled(xn.nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2
    with pytest.raises(TypeError, match=r"the layer Doubled: Sequential\(ReLU\) has no ONNX form"):
        xn.export_onnx(Doubled(xn.nn.ReLU()), "unused.onnx", numpy.ones((1, 2), numpy.float32))


@pytest.mark.parametrize("labels", [numpy.array([{"label": i} for i in range(4)], dtype=object),
                                    numpy.array(list("abcd"))])
def test_to_memmap_refuses_objects_and_strings_before_it_replaces_a_set(labels, tmp_path):
    """A prober's finding (session 5): a NumPy array of objects was pickled over a good set,
    which load_memmap then refused: the old set was gone."""
    x = numpy.arange(8, dtype=numpy.float32).reshape(4, 2)
    xn.datasets.to_memmap(tmp_path, x, numpy.arange(4))
    with pytest.raises(TypeError, match=r"to_memmap: t must hold numbers, got ndarray of"):
        xn.datasets.to_memmap(tmp_path, x, labels)
    kept_x, kept_t = xn.datasets.load_memmap(tmp_path)
    numpy.testing.assert_array_equal(kept_t, numpy.arange(4))


def test_save_leaves_a_read_only_file_as_it_is(tmp_path, monkeypatch):
    """A prober's finding (session 5): the rename of an atomic save replaced a chmod-444
    checkpoint (the usual guard of a best model), where open(path, "wb") would refuse.
    (os.access is told the answer a user without write permission gets: tests run as root.)"""
    from xpnet import _files as io_files
    path = tmp_path / "best.npz"
    xn.save(xn.nn.Affine(2, 2), path)
    before = path.read_bytes()
    monkeypatch.setattr(io_files.os, "access", lambda p, mode: False)
    with pytest.raises(PermissionError, match=r"best\.npz: the file is read-only, and is left as it is"):
        xn.save(xn.nn.Affine(2, 2), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.npz"]


def test_model_checkpoint_into_a_folder_it_cannot_write_is_refused_at_the_start(tmp_path, monkeypatch):
    from xpnet.training import writers
    monkeypatch.setattr(writers.os, "access", lambda p, mode: False)
    cb = xn.callbacks.ModelCheckpoint(tmp_path / "c.npz", monitor="loss")
    with pytest.raises(PermissionError, match=r"no permission to create files in the folder"):
        _fit_with(cb)
