"""For tests/training/test_callbacks.py, run under ``mpiexec -n 2 python tests/callbacks_job.py DEVICE DIR``:
a data-parallel fit with ModelCheckpoint(save_best_only=True) on a figure whose best is
epoch 2 of 3, and a CSVLogger; each rank then loads the checkpoint and checks it holds the
model as it was after epoch 2."""
import sys
from pathlib import Path

import numpy

import xpnet as xn


class Score(xn.callbacks.Callback):
    """Adds ``score`` (best at epoch 2) to the logs, and keeps each epoch's parameters."""

    def __init__(self):
        self.params = {}

    def on_epoch_end(self, run, logs):
        logs["score"] = [0.5, 0.1, 0.3][logs["epoch"] - 1]
        self.params[logs["epoch"]] = {k: v.copy() for k, v in xn.to_host(run.model.params()).items()}


def main(device, folder):
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((160, 6)), rng.integers(0, 3, 160)
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(6, 8, dtype="float64"), xn.nn.Tanh(), xn.nn.Affine(8, 3, dtype="float64"))
        score = Score()
        callbacks = [score, xn.callbacks.ModelCheckpoint(folder / "best.npz", monitor="score", save_best_only=True),
                     xn.callbacks.CSVLogger(folder / "log.csv")]
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=0.01), (x, t), epochs=3, batch_size=40,
               seed=1, callbacks=callbacks)
        loaded = xn.nn.Sequential(xn.nn.Affine(6, 8, dtype="float64"), xn.nn.Tanh(),
                                  xn.nn.Affine(8, 3, dtype="float64"))
        xn.load(loaded, folder / "best.npz")
    held = xn.to_host(loaded.params())
    assert all(numpy.array_equal(held[k], score.params[2][k]) for k in held), "not epoch 2's model"
    assert not all(numpy.array_equal(held[k], score.params[3][k]) for k in held)
    print(f"rank {xn.distributed.rank()}: the checkpoint holds epoch 2's model", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
