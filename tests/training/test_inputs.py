"""Issue 16, inputs and command line (cases 18-22): what a NumPy user naturally passes
works, and what cannot work says so."""
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

ROOT = Path(__file__).resolve().parents[2]


# 18. Layers cast real inputs to their own dtype, on the device, and agree with each other.
@pytest.mark.parametrize("dtype", ["float64", "float16", "uint8", "int32", "bool"])
@pytest.mark.parametrize("make, shape", [
    (lambda: xn.nn.Affine(4, 3), (2, 4)),
    (lambda: xn.nn.BatchNorm(4), (2, 4)),
    (lambda: xn.nn.Conv2D(1, 2, 2), (2, 1, 3, 3)),
], ids=["affine", "batchnorm", "conv"])
def test_layers_cast_real_inputs_to_their_dtype(device, make, shape, dtype):
    layer = make()
    x = xn.to_device(numpy.arange(numpy.prod(shape)).reshape(shape) % 2 == 0, device).astype(dtype)
    before = xn.transfer_stats()
    y = layer(x)
    assert y.dtype == numpy.float32 and (xn.transfer_stats() - before).count == 0
    assert layer.backward(xn.xp.ones(y.shape, dtype="float32")).dtype == numpy.float32


def test_a_float32_model_trains_on_float64_numpy_data(device):
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)  # float64, as NumPy makes it
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(4, 8), xn.nn.BatchNorm(8), xn.nn.ReLU(), xn.nn.Affine(8, 3))
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), epochs=10,
                     batch_size=16, seed=0)
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    assert xn.predict(model, x).dtype == numpy.float32


# 19. Python lists where arrays are expected.
def test_lists_are_taken_where_arrays_are_expected(device):
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(2, 2))
    x, t = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [1, 0, 1, 0]
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=2)
    assert xn.predict(model, x).shape == (4, 2)
    assert set(xn.evaluate(model, (x, t))) == {"loss", "accuracy"}
    model.set_params({"0.b": [1.0, 2.0]})
    numpy.testing.assert_array_equal(xn.to_host(model.params()["0.b"]), [1, 2])


@pytest.mark.parametrize("bad, match", [
    ((["a", "b"], [0, 1]), "fit data: x must hold numbers, got list of <U1"),
    (([[1.0], [1.0, 2.0]], [0, 1]), "fit data: x must be an array or something numpy.asarray accepts"),
    ((5.0, 1), r"one sample per row"),
])
def test_what_is_not_an_array_is_named(device, bad, match):
    model = xn.nn.Sequential(xn.nn.Affine(1, 2))
    with pytest.raises((TypeError, ValueError), match=match):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), bad)


def _nan_at_mark(xb, tb):
    """fit's transform: the host data holds a finite marker (fit refuses NaN in host data up
    front), which becomes NaN on the device, inside the step, so the loss turns NaN there."""
    return xn.device_of(xb).xp.where(xb == 1e30, numpy.nan, xb), tb


# 22. A NaN loss leaves the model as it was at the last finite check, and says so.
def test_a_nan_loss_restores_the_last_finite_parameters(device, mnist_small):
    (x, t), _ = mnist_small
    x = x[:1000].copy()
    x[950:] = 1e30  # batch 20 of 20 turns the loss NaN (on the device: host NaN is refused up front)
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(784, 20), xn.nn.ReLU(), xn.nn.Affine(20, 10))
    opt = xn.optim.Adam(model)
    with pytest.raises(xn.TrainingError, match=r"step 20\b.*restored to where they were after step 18 of epoch 1"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t[:1000]), batch_size=50, shuffle=False,
               transform=_nan_at_mark)
    assert all(numpy.isfinite(v).all() for v in xn.to_host(model.params()).values())
    assert all(numpy.isfinite(v).all() for s in xn.to_host(opt.state).values() for v in s.values())
    assert opt.t == 18
    # and it is exactly the model after 18 steps of the same run
    xn.seed(0)
    again = xn.nn.Sequential(xn.nn.Affine(784, 20), xn.nn.ReLU(), xn.nn.Affine(20, 10))
    xn.fit(again, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(again), (x[:900], t[:900]), batch_size=50,
           shuffle=False)
    for name, value in xn.to_host(again.params()).items():
        numpy.testing.assert_array_equal(xn.to_host(model.params()[name]), value)


# 21. The command line.
def _xpnet(*args, **env):
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg", **env})


def test_info_with_a_bad_device_exits_nonzero_with_the_reason():
    result = _xpnet("info", XPNET_DEVICE="bogus")
    assert result.returncode == 2 and "XPNET_DEVICE='bogus' is not a device" in result.stderr


def test_train_runs_only_examples_by_name(tmp_path):
    script = tmp_path / "mine.py"
    script.write_text("import sys; print('ran', sys.argv[1:])\n")
    outside = _xpnet("train", f"../{tmp_path.name}/mine")
    assert outside.returncode == 2 and "not an example" in outside.stderr and "ran" not in outside.stdout
    explicit = _xpnet("train", "--script", str(script), "--flag")
    assert explicit.returncode == 0 and "ran ['--flag']" in explicit.stdout


@pytest.mark.parametrize("limit", ["-5", "0", "2.5"])
def test_examples_refuse_counts_below_one(limit):
    result = _xpnet("train", "mnist_mlp", "--limit", limit, XPNET_DEVICE="sim")
    assert result.returncode == 2 and "--limit" in result.stderr


def test_bench_out_that_is_a_file_gets_a_message(tmp_path):
    target = tmp_path / "report"
    target.write_text("")
    result = _xpnet("bench", "--quick", "--out", str(target))
    assert result.returncode == 2 and "that is a file" in result.stderr and "Traceback" not in result.stderr
