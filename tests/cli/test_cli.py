"""Reliability issues 25 and 31, the command line, plots, synthetic sets, MPI launches and
the test suite's own output: each case as a user met it.

25.26  usage errors of ``xpnet train`` exit 2 with one line naming the argument
25.30  under mpiexec each rank's BLAS gets its share of the cores; the example reports on rank 0
25.31  a failing rank's traceback is read by the launcher before the job is aborted
31.15  ``xpnet bench -k ...``'s report names the command that ran
31.16  ``History.plot`` returns the file it wrote; negative losses get a linear axis
31.28  the synthetic sets check their arguments
31.29  ``xpnet info | head -1`` ends quietly
31.31  the short test summary has one line per skip reason, and MNIST skips are loud
"""
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy
import pytest

import xpnet as xn

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
needs_mpiexec = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")


def _run(*args, env=None, stdout=subprocess.PIPE):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    env.pop("XPNET_DEVICE", None)
    return subprocess.run([sys.executable, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=env)


def _mpi(*args, env=None, timeout=120):
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "XPNET_DEVICE"}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", MPLBACKEND="Agg")
    return subprocess.run([MPIEXEC, "-n", "2", sys.executable, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _one_usage_line(result, *names):
    """A usage error: status 2, no traceback, one line on stderr that names ``names``."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


# 25.26: the command line's usage errors

def test_train_script_without_a_path_says_so():
    line = _one_usage_line(_run("-m", "xpnet", "train", "--script"), "--script", "PATH")
    assert "not an example" not in line


def test_train_without_an_example_lists_them():
    _one_usage_line(_run("-m", "xpnet", "train"), "mnist_mlp", "--script")


def test_train_with_bad_hidden_sizes_names_the_argument():
    # Fails before MNIST is read: no data needed
    line = _one_usage_line(_run("-m", "xpnet", "train", "mnist_mlp", "--hidden", "10,abc"), "--hidden", "'abc'")
    assert "ValueError" not in line


@pytest.mark.parametrize("text", ["10,abc", "", "100,0", "10,,5", "1.5"])
def test_hidden_sizes_refuse_what_is_not_a_list_of_counts(text):
    from xpnet.cli import positive_ints
    with pytest.raises(Exception, match="separated by commas") as info:
        positive_ints(text)
    assert type(info.value).__name__ == "ArgumentTypeError"


def test_hidden_sizes_parse():
    from xpnet.cli import positive_ints
    assert positive_ints("100, 50") == [100, 50] and positive_ints("7") == [7]


# 31.29: a reader that goes away

@pytest.mark.slow
def test_info_into_a_closed_pipe_ends_quietly():
    """``xpnet info | head -1``: head exits after one line. Here the reader is gone before
    the first byte (the read end closed before the start), so every run meets the closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = _run("-m", "xpnet", "info", stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr


# 31.15: the bench report's command line

@pytest.mark.slow
def test_bench_report_names_the_command_it_ran(tmp_path):
    result = _run("-m", "xpnet", "bench", "-k", "matmul and 256", "--quiet", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    command = next(line for line in (tmp_path / "report.md").read_text().splitlines()
                   if line.startswith("Command:"))
    assert "xpnet bench -k 'matmul and 256'" in command, command
    assert "--size=full" in command and "--quick" not in command and "--size=quick" not in command, command


# 31.16: plots

def _history(losses):
    history = xn.History()
    history.step_loss.extend(losses)
    history.epoch_loss.extend([float(numpy.mean(losses[:len(losses) // 2])), float(numpy.mean(losses))])
    history.val_loss.extend([losses[0], losses[-1]])
    return history


@pytest.mark.parametrize("name, written", [("curve", "curve.png"), ("curve.png", "curve.png"),
                                           ("run.final", "run.final.png"), ("curve.pdf", "curve.pdf")])
def test_history_plot_returns_the_file_it_wrote(tmp_path, name, written):
    pytest.importorskip("matplotlib")
    returned = _history([1.0, 0.5, 0.3, 0.2]).plot(tmp_path / name)
    assert returned == str(tmp_path / written)
    assert sorted(p.name for p in tmp_path.iterdir()) == [written]
    magic = b"%PDF" if written.endswith(".pdf") else b"\x89PNG\r\n\x1a\n"
    assert Path(returned).read_bytes().startswith(magic)


def _drawn(monkeypatch, draw):
    """The figure ``draw`` makes, kept instead of written."""
    pytest.importorskip("matplotlib")
    from xpnet import plot
    figures = []
    monkeypatch.setattr(plot, "_write", lambda fig, path: figures.append(fig) or str(path))
    draw()
    return figures[0]


def _shows_its_lines(ax):
    """Every finite point of every line lies inside the panel's y range."""
    low, high = ax.get_ylim()
    ys = numpy.concatenate([numpy.asarray(line.get_ydata(), float) for line in ax.get_lines()])
    return bool(len(ys)) and low <= ys.min() and ys.max() <= high


def test_negative_losses_are_drawn_on_a_linear_axis(monkeypatch):
    """A regression's negative log-likelihood: on a log axis the panel is empty."""
    fig = _drawn(monkeypatch, lambda: _history([-1.0, -2.5, -3.0, -3.2]).plot("nll.png"))
    assert fig.axes[0].get_yscale() == "linear"
    assert _shows_its_lines(fig.axes[0])


def test_positive_losses_keep_their_log_axis(monkeypatch):
    fig = _drawn(monkeypatch, lambda: _history([2.3, 1.0, 0.3, 0.05]).plot("ce.png"))
    assert fig.axes[0].get_yscale() == "log" and _shows_its_lines(fig.axes[0])


def test_regression_plot_with_a_zero_loss_is_drawn_on_a_linear_axis(monkeypatch):
    from xpnet.plot import plot_regression
    x = numpy.linspace(-1, 1, 5)
    fig = _drawn(monkeypatch, lambda: plot_regression(x, x, x, [0.5, 0.1, 0.0], "fit.png"))
    assert fig.axes[1].get_yscale() == "linear" and _shows_its_lines(fig.axes[1])


# 31.28: the synthetic sets check their arguments

@pytest.mark.parametrize("make, name", [
    (lambda: xn.datasets.spiral(10, classes=0), "classes"),
    (lambda: xn.datasets.spiral(0), "n_per_class"),
    (lambda: xn.datasets.spiral(2.5), "n_per_class"),
    (lambda: xn.datasets.spiral(10, noise=-0.1), "noise"),
    (lambda: xn.datasets.two_moons(1), "n"),
    (lambda: xn.datasets.two_moons(100, noise=float("nan")), "noise"),
    (lambda: xn.datasets.exp_regression(0), "n"),
    (lambda: xn.datasets.exp_regression(10, low=2.0, high=-2.0), "low"),
    (lambda: xn.datasets.exp_regression(10, noise=-1.0), "noise"),
], ids=["spiral-classes-0", "spiral-n-0", "spiral-n-float", "spiral-noise", "moons-1", "moons-nan",
        "exp-n-0", "exp-range", "exp-noise"])
def test_synthetic_sets_name_a_bad_argument(make, name):
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        make()


def test_synthetic_sets_still_accept_numpy_integers():
    x, t = xn.datasets.spiral(numpy.int64(4), classes=numpy.int32(2), seed=0)
    assert x.shape == (8, 2) and sorted(set(t.tolist())) == [0, 1]


# 25.31: a failing rank's traceback is read before the abort

@pytest.mark.slow
def test_a_failing_rank_waits_until_its_traceback_is_read_before_it_aborts(monkeypatch):
    """A launcher forwards each rank's stderr from a pipe; MPI_Abort has it kill the job, and
    what it had not read by then was lost (about one run in ten had no traceback). Here
    the launcher is a thread that starts reading 0.3 s late; when Abort comes, the pipe
    must be empty."""
    fcntl = pytest.importorskip("fcntl")
    import termios

    from xpnet import distributed
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", buffering=1)  # a rank's stderr: a line-buffered pipe
    received = bytearray()

    def launcher():
        time.sleep(0.3)
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    class Comm:
        rank, size, unread = 1, 2, None

        def Abort(self, code):
            unread = bytearray(4)
            fcntl.ioctl(write_end, termios.FIONREAD, unread)
            self.unread = int.from_bytes(unread, sys.byteorder)

    reader = threading.Thread(target=launcher)
    reader.start()
    comm = Comm()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(distributed, "init", lambda: comm)
    try:
        try:
            raise RuntimeError("rank 1 fails on purpose")
        except RuntimeError:
            distributed._abort(*sys.exc_info())
    finally:
        stream.close()
        reader.join()
        os.close(read_end)
    assert comm.unread == 0, f"{comm.unread} bytes of the traceback were still unread at the abort"
    text = received.decode()
    assert "rank 1 of 2 failed" in text and "RuntimeError: rank 1 fails on purpose" in text, text


# 25.30: MPI launches

def test_ranks_on_one_host_share_its_cores(monkeypatch):
    """Without mpiexec: the launcher's variables as MPICH's hydra sets them, 4 ranks on 8 cores."""
    from xpnet import _launch
    from xpnet.cli import info_lines
    calls = []
    fake = type(sys)("threadpoolctl")
    fake.threadpool_limits = lambda limits=None, user_api=None: calls.append(limits)
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)  # NumPy is loaded: the limit goes there
    monkeypatch.setattr(_launch, "_decision", None)
    monkeypatch.setattr(_launch, "usable_cores", lambda: 8)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what share_cores sets goes with the test
    for name in _launch.THREAD_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(PMI_SIZE="4", MPI_LOCALNRANKS="4")
    said = _launch.share_cores()
    assert calls == [2] and os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert "4 ranks on this host share 8 cores: 2 BLAS threads per rank" in said
    assert any(said in line for line in info_lines())
    for name in _launch.THREAD_VARIABLES:  # the user's choice stands
        del os.environ[name]
    os.environ["OMP_NUM_THREADS"] = "3"
    said = _launch.share_cores()
    assert calls == [2] and "as you set them (OMP_NUM_THREADS=3)" in said
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# One write of a whole line, so that the two ranks' lines do not interleave
BLAS_THREADS = "from threadpoolctl import threadpool_info; import os; os.write(1, ('blas threads %s\\n' % " \
               "[p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']).encode())"


@needs_mpiexec
@pytest.mark.parametrize("first", ["import xpnet; import numpy", "import numpy; import xpnet"],
                         ids=["xpnet-first", "numpy-first"])
@pytest.mark.slow
def test_each_rank_gets_its_share_of_the_cores(first):
    pytest.importorskip("threadpoolctl")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS"):
        assert name not in os.environ, f"{name} is set in this test's environment; the test needs it unset"
    result = _mpi("-c", f"{first}; {BLAS_THREADS}")
    assert result.returncode == 0, result.stderr[-3000:]
    share = max(1, _cores() // 2)
    assert result.stdout.count(f"blas threads [{share}]") == 2, result.stdout


@needs_mpiexec
def test_info_says_how_many_threads_each_rank_has():
    result = _mpi("-m", "xpnet", "info")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(f"2 ranks on this host share {_cores()} cores: {max(1, _cores() // 2)} BLAS "
                               f"thread") == 2, result.stdout
    chosen = _mpi("-m", "xpnet", "info", env={"OPENBLAS_NUM_THREADS": "1"})
    assert chosen.stdout.count("BLAS threads as you set them (OPENBLAS_NUM_THREADS=1)") == 2, chosen.stdout


@pytest.mark.slow
@needs_mpiexec
@pytest.mark.mnist
def test_the_mlp_example_reports_on_rank_0_only(tmp_path):
    result = _mpi("examples/mnist_mlp.py", "--epochs", "1", "--limit", "1000", "--device", "cpu",
                  "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test accuracy") == 1 and result.stdout.count("plot:") == 1, result.stdout
    assert (tmp_path / "training.png").exists() and (tmp_path / "model.npz").exists()


# 31.31: the suite's own summary

CONFTEST = """
import tests.conftest as suite
from tests.conftest import *  # noqa: F401,F403  the suite's fixtures and hooks

suite.mnist_unavailable = lambda: "MNIST is not here and could not be downloaded; set XPNET_DATA_DIR (a test)"
"""
SKIPPED_FILE = """
import pytest

@pytest.mark.skipif(True, reason="the same reason everywhere")
@pytest.mark.parametrize("i", range(3))
def test_skipped(i):
    pass

def test_on_every_device(device):
    assert device.kind in ("cpu", "sim", "cuda")
"""
MNIST_FILE = """
import pytest

@pytest.mark.mnist
def test_reads_mnist():
    pass
"""


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """The -rs output of a small suite: two files skipping for one reason and using the
    device fixture, and an MNIST test with the data missing."""
    folder = tmp_path_factory.mktemp("suite")
    (folder / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    for name in ("test_one.py", "test_two.py"):
        (folder / name).write_text(textwrap.dedent(SKIPPED_FILE))
    (folder / "test_mnist.py").write_text(textwrap.dedent(MNIST_FILE))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XPNET_DATA_DIR", None)
    env.pop("XPNET_DEVICE", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)],
                            capture_output=True, text=True, cwd=folder, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_one_summary_line_per_skip_reason(summary):
    lines = [line for line in summary.splitlines() if line.startswith("SKIPPED")]
    same = [line for line in lines if "the same reason everywhere" in line]
    assert len(same) == 1 and same[0].startswith("SKIPPED [6] "), lines
    cuda = [line for line in lines if "cuda:" in line]
    if xn.cuda_unavailable_reason() is not None:
        assert len(cuda) == 1 and cuda[0].startswith("SKIPPED [2] ") and "conftest.py:" in cuda[0], lines
    else:
        assert cuda == [], lines


@pytest.mark.slow
def test_mnist_skips_are_loud(summary):
    loud = [line for line in summary.splitlines() if "MNIST test SKIPPED" in line]
    assert len(loud) == 1 and "XPNET_DATA_DIR" in loud[0] and loud[0].startswith("!"), summary


def test_a_plot_leaves_the_callers_backend_and_figures_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    """A prober's finding (session 5): plotting switched the caller's matplotlib backend to
    Agg (a notebook's inline display off), a failed plot left its figure open in pyplot, and
    the PNG was written in place."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from xpnet.plot import plot_regression
    backend = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        x = numpy.linspace(-1, 1, 5)
        path = plot_regression(x, x, x, [0.5, 0.1], tmp_path / "fit.png")
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == []
    finally:
        matplotlib.use(backend)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    before = open(path, "rb").read()
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (_ for _ in ()).throw(OSError(28, "disk full")))
    with pytest.raises(OSError, match="disk full"):
        plot_regression(x, x, x, [0.5, 0.1], path)
    assert open(path, "rb").read() == before and sorted(p.name for p in tmp_path.iterdir()) == ["fit.png"]
