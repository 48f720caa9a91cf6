"""Issue 18: data-parallel training on MPI. Two ranks launched with mpiexec (MPICH's wheel)
train to the parameters of one process on the same global batches, on cpu and sim; a rank
that raises stops the job."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

import xpnet as xn

HERE = Path(__file__).resolve().parents[1]  # tests/, where the MPI jobs are
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = [pytest.mark.slow,  # whole MPI jobs
              pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")]


def _job(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_DEVICE",)}
    # An Open MPI mpiexec (a GPU machine's own) refuses root, as containers often run, unless told
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    start = time.monotonic()
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_job.py"), *args],
                            capture_output=True, text=True, timeout=timeout, env=env)
    return result, time.monotonic() - start


@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_two_ranks_train_to_the_single_process_parameters(tmp_path, device):
    from tests.mpi_job import run
    result, _ = _job("--device", device, "--out", str(tmp_path / "m.npz"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("losses") == 1  # only rank 0 reports
    alone, history = run(device)
    together, _ = run(device)
    xn.load(together, tmp_path / "m.npz")
    for name, value in xn.to_host(alone.params()).items():
        numpy.testing.assert_allclose(xn.to_host(together.params()[name]), value, rtol=0, atol=1e-10, err_msg=name)
    reported = [float(v) for v in result.stdout.split("losses [")[1].split("]")[0].split(",")]
    numpy.testing.assert_allclose(reported, history.epoch_loss, rtol=1e-6)  # the global batch's losses
    validated = [float(v) for v in result.stdout.split("validation [")[1].split("]")[0].split(",")]
    numpy.testing.assert_allclose(validated, history.val_loss, rtol=1e-10)  # parts evaluated, sums reduced


def test_a_rank_that_raises_stops_the_job(tmp_path):
    result, seconds = _job("--fail-at", "3", timeout=90)
    assert result.returncode != 0 and seconds < 60
    assert "rank 1 of 2 failed" in result.stderr and "fails on purpose" in result.stderr


def test_a_rank_that_raises_before_it_uses_mpi_stops_the_job():
    """A prober's finding (session 5): the abort hook came with the first MPI call, so a rank
    that failed before one (its data missing, say) left the others waiting in fit forever."""
    result, seconds = _job("--fail-before-mpi", timeout=90)
    assert result.returncode != 0 and seconds < 60
    assert "rank 1 of 2 failed" in result.stderr and "fails on purpose before it uses MPI" in result.stderr


def test_distributed_without_a_launcher_says_how_to_launch():
    from tests.mpi_job import run
    with pytest.raises(RuntimeError, match="mpiexec -n 2 python"):
        run("cpu", distributed=True)


def test_ranks_draw_dropout_masks_of_their_own():
    with xn.use_device("cpu"):  # whatever XPNET_DEVICE says: the input is a NumPy array
        layers = [xn.nn.Dropout(0.5, seed=1) for _ in range(2)]
        xn.distributed.separate_streams(xn.nn.Sequential(layers[1]), 1)  # what rank 1's fit does
        masks = [xn.to_host(layer(numpy.ones((8, 8)))) for layer in layers]
    assert not numpy.array_equal(*masks)


def test_auto_gives_each_rank_on_a_host_its_own_gpu(monkeypatch):
    from xpnet import backends, device
    monkeypatch.setattr(backends, "cuda_unavailable_reason", lambda index=None: None)
    monkeypatch.setattr(backends, "cuda_device_names", lambda: ("GPU A", "GPU B"))
    monkeypatch.setattr(device, "Device", lambda spec, **kw: spec)  # the name auto would open
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    monkeypatch.setenv("MPI_LOCALRANKID", "1")
    assert device._auto_device() == "cuda:1"
    monkeypatch.setenv("MPI_LOCALNRANKS", "3")
    with pytest.raises(xn.DeviceError, match="3 MPI ranks on this host but 2 CUDA device"):
        device._auto_device()
