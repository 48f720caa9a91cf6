"""Issue 18: one epoch of the MLP and CNN examples on 1 and 2 MPI ranks of this machine,
and the allreduce time per step for each model's gradient.

    python bench/distributed.py            (needs pip install 'xpnet[mpi]')

Each rank gets its share of the cores (OPENBLAS_NUM_THREADS = cores / ranks): ranks that
each start as many BLAS threads as there are cores fight for them, and MPI's busy-waiting
makes that far worse (the MLP epoch took 31 s on 2 ranks that way, 0.7 s with one thread
each, on the 2-core development machine). Efficiency = time on 1 rank / (ranks x time).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
EXAMPLES = {
    "MLP 784-100-50-10, SGD, batch 32": (["examples/mnist_mlp.py", "--epochs", "1"], 89_610),
    "SimpleConvNet, Adam, batch 100, 12000 images": (["examples/mnist_cnn.py", "--epochs", "1", "--limit", "12000"],
                                                     433_910),
}
ALLREDUCE = """
import time, numpy
from mpi4py import MPI
comm = MPI.COMM_WORLD
buf = numpy.ones({n}, dtype=numpy.float32)
for _ in range(20):
    comm.Allreduce(MPI.IN_PLACE, buf)
comm.Barrier()
start = time.perf_counter()
for _ in range(500):
    comm.Allreduce(MPI.IN_PLACE, buf)
if comm.rank == 0:
    print((time.perf_counter() - start) / 500)
"""


def run(ranks, args):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks)), "MPLBACKEND": "Agg"}
    env.pop("XPNET_DEVICE", None)
    out = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, *args, "--out", "/tmp/xpnet-bench-dist"],
                         capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout
    return float(re.search(r"epochs in ([\d.]+) s", out).group(1)), re.search(r"test accuracy ([\d.]+)", out).group(1)


def allreduce_seconds(n):
    out = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", ALLREDUCE.format(n=n)], capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip())


def main():
    print(f"{os.cpu_count()} cores; one run per cell")
    print("| example, one epoch | 1 rank s | 2 ranks s | efficiency | test accuracy 1 / 2 ranks "
          "| allreduce of the gradient, 2 ranks |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (args, parameters) in EXAMPLES.items():
        (one, acc1), (two, acc2) = run(1, args), run(2, args)
        reduce = allreduce_seconds(parameters)
        print(f"| {name} | {one:.2f} | {two:.2f} | {one / (2 * two):.0%} | {acc1} / {acc2} | "
              f"{reduce * 1e6:.0f} us ({parameters:,} float32) |", flush=True)


if __name__ == "__main__":
    main()
