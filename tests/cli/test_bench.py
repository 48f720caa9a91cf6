"""The benchmark suite's own checks: its timer waits for queued work, and every case
runs (once, on sim, with timing off) so a broken benchmark shows up in `make test`."""
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import pytest  # noqa: E402
from _timing import synchronized  # noqa: E402

pytestmark = pytest.mark.slow  # end to end: whole examples, processes, benchmarks


class _QueuedDevice:
    """A device whose work finishes only when synchronize() is called, like a GPU's."""

    def __init__(self, seconds):
        self.seconds, self.done = seconds, False

    def synchronize(self):
        time.sleep(self.seconds)
        self.done = True


def test_timer_waits_for_queued_work():
    device = _QueuedDevice(0.05)
    run = synchronized(lambda: "queued", device)
    start = time.perf_counter()
    assert run() == "queued"
    assert time.perf_counter() - start >= 0.05 and device.done


def test_every_benchmark_case_runs_on_sim():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCH), "-q", "-p", "no:cacheprovider", "--devices=sim",
         "--benchmark-disable", "--size=quick"], capture_output=True, text=True, cwd=BENCH.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_side_by_side_comparison_times_every_implementation_it_has(monkeypatch):
    """bench/compare.py on a tiny batch: xpnet and the floor always, PyTorch where installed."""
    import compare
    monkeypatch.setattr(compare, "SETTLE", 0.0)
    times = compare.compare(compare.mlp_steps(compare.MLP, 4), rounds=2, block_seconds=0.005)
    assert {"xpnet", "numpy-floor"} <= set(times) <= set(compare.IMPLS)
    assert all(t > 0 for t in times.values())


def test_the_cnn_floor_takes_the_same_step_as_xpnet(rng):
    """bench/floor_cnn.py is a fair floor only if it computes what xpnet's SimpleConvNet
    computes: from the same weights and batch, the same loss and the same updated weights."""
    import numpy
    from floor_cnn import FloorConvNet
    from models import convnet

    import xpnet as xn
    floor = FloorConvNet(8)
    x = rng.random((8, 1, 28, 28), dtype=numpy.float32)
    t = rng.integers(0, 10, 8)
    with xn.use_device("cpu"):
        model = convnet()
    W1, b1, W2, b2, W3, b3 = floor.params
    names = {"0.W": W1.reshape(30, 1, 5, 5), "0.b": b1, "3.W": W2, "3.b": b2, "5.W": W3, "5.b": b3}
    model.set_params(names)
    opt, loss_fn = xn.optim.Adam(model, lr=1e-3), xn.nn.SoftmaxCrossEntropy()
    for _ in range(2):
        loss = float(loss_fn(model(x), t))
        model.backward(loss_fn.backward())
        opt.step()
        assert float(floor.step(x, t)) == pytest.approx(loss, rel=1e-5)
    params = model.params()
    for name, value in names.items():
        numpy.testing.assert_allclose(params[name].reshape(value.shape), value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_recorded_step_holds_every_kernel_of_the_step():
    """bench/launches.py: counted on sim, the recorded step is one launch of exactly the
    kernels the step runs kernel by kernel, for every model it lists."""
    from launches import MODELS, count
    for name in MODELS:
        eager, replay, why = count(name, batch=8)
        assert eager > 20 and replay.launches == 1 and replay.kernels == eager and why is None, name


def test_the_streaming_benchmark_runs():
    result = subprocess.run([sys.executable, "stream.py", "--samples", "1500", "--epochs", "1"], capture_output=True,
                            text=True, cwd=BENCH)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "memmap streamed" in result.stdout


def test_the_recorded_step_comparison_runs_on_sim():
    """bench/recorded.py, the GPU session's comparison of recorded steps, runs end to end
    (on sim, which records as CUDA does; PyTorch has no sim counterpart)."""
    result = subprocess.run([sys.executable, "recorded.py", "--device", "sim", "--batch", "8", "--rounds", "1"],
                            capture_output=True, text=True, cwd=BENCH)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("xpnet-graph") == 4
