"""The benchmark suite's own checks: its timer waits for queued work, and every case
runs (once, on sim, with timing off) so a broken benchmark shows up in `make test`."""
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from _timing import synchronized  # noqa: E402


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
    times = compare.compare(compare.MLP, batch=4, rounds=2, block_seconds=0.005)
    assert {"xpnet", "numpy-floor"} <= set(times) <= set(compare.IMPLS)
    assert all(t > 0 for t in times.values())
