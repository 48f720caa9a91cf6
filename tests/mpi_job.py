"""A data-parallel training job for tests/cli/test_distributed.py: run under mpiexec, or alone
(then it is the single-process reference). Writes the trained parameters (rank 0)."""
import argparse

import numpy

import xpnet as xn


def run(device, out=None, fail_at=None, distributed=None):
    rng = numpy.random.default_rng(0)
    x, t = rng.standard_normal((240, 12)), rng.integers(0, 3, 240)
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(12, 16, dtype="float64"), xn.nn.Tanh(),
                                 xn.nn.Affine(16, 3, dtype="float64"))
        opt = xn.optim.Adam(model, lr=0.01)
        if fail_at is not None and xn.distributed.rank() == 1:
            real = opt.step

            def step():
                if opt.t >= fail_at:
                    raise RuntimeError(f"rank 1 fails on purpose at step {fail_at}")
                real()
            opt.step = step
        history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=3, batch_size=40, seed=1,
                         distributed=distributed, validation=(x[:101], t[:101]))
    if out:
        xn.save(model, out)
    return model, history


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out")
    parser.add_argument("--fail-at", type=int)
    parser.add_argument("--fail-before-mpi", action="store_true")
    args = parser.parse_args()
    if args.fail_before_mpi and xn.distributed.local_rank() == 1:  # the launcher's word: MPI not started
        raise RuntimeError("rank 1 fails on purpose before it uses MPI")
    _, history = run(args.device, args.out, args.fail_at)
    if xn.distributed.rank() == 0:
        print("losses", history.epoch_loss, "accuracy", history.epoch_accuracy, "validation", history.val_loss)
