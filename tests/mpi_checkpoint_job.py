"""For tests/io/test_checkpoint_rules.py, run under ``mpiexec -n 2``: every rank saves the
model, then loads the file into a fresh one and checks it holds what was just saved.
Rank 0's rename is held back a little, so a save that returned early on rank 1 would have
rank 1 read the file before it is replaced. With ``--fail``, rank 0's write of the last
round fails (a full disk), and each rank says what its save did."""
import sys
import time

import numpy

import xpnet as xn
from xpnet import io

path = sys.argv[1]
rank = xn.distributed.rank()
if rank == 0:
    replace = io.os.replace

    def slow_replace(src, dst):
        time.sleep(0.3)
        replace(src, dst)
    io.os.replace = slow_replace

model = xn.nn.Affine(3, 2, dtype="float64")
rounds, fresh = 4, 0
for k in range(rounds):
    model.set_params({"W": numpy.full((3, 2), float(k)), "b": numpy.full(2, float(k))})
    if "--fail" in sys.argv and k == rounds - 1:
        if rank == 0:
            io.numpy.savez = lambda f, **arrays: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        try:
            xn.save(model, path)
        except Exception as exc:  # noqa: BLE001 (the job reports what each rank's save raised)
            print(f"rank {rank}: save raised {type(exc).__name__}: {exc}", flush=True)
        else:
            print(f"rank {rank}: save returned", flush=True)
        break
    xn.save(model, path)
    loaded = xn.nn.Affine(3, 2, dtype="float64")
    try:
        xn.load(loaded, path)
    except FileNotFoundError:
        continue  # the first file is not there yet
    fresh += bool((xn.to_host(loaded.params()["W"]) == k).all())
print(f"rank {rank}: {fresh} of {rounds} loads read the new file", flush=True)
