"""Issue 19 on a GPU: ``fit`` streaming a memory-mapped set (host batches, each copied a
step ahead from page-locked memory on a copy stream) against the same set copied to the
GPU once, with the two things a streamed epoch cannot beat measured alone: reading the
host batches, and a page-locked copy of a batch's bytes.

    python bench/gpu_stream.py [--model mlp|cnn] [--samples 60000] [--epochs 4] [--batch 100 1000]

The model is the TF2 MLP with SGD or the book's SimpleConvNet with Adam, its step
recorded (what fit does on CUDA). Epoch times are the median of the epochs after the
first (which compiles and records).
"""
import argparse
import tempfile
import time

import cupy
import numpy
from models import convnet
from test_training import MLP, mlp

import xpnet as xn


def pinned_copy_bandwidth(nbytes, repeats=50):
    """Bytes/s of host->device copies of ``nbytes`` from page-locked memory, on a stream
    of their own, timed with CUDA events."""
    src = numpy.frombuffer(cupy.cuda.alloc_pinned_memory(nbytes), numpy.uint8, nbytes)
    dst = cupy.empty(nbytes, cupy.uint8)
    stream = cupy.cuda.Stream(non_blocking=True)
    dst.set(src, stream=stream)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(stream)
    for _ in range(repeats):
        dst.set(src, stream=stream)
    end.record(stream)
    end.synchronize()
    return nbytes * repeats / (cupy.cuda.get_elapsed_time(start, end) / 1e3)


MODELS = {"mlp": ("TF2 MLP, SGD", (784,), lambda: mlp(MLP), lambda m: xn.optim.SGD(m, lr=0.1)),
          "cnn": ("SimpleConvNet, Adam", (1, 28, 28), convnet, lambda m: xn.optim.Adam(m, lr=1e-3))}


def epoch_seconds(model_name, data, batch, epochs, **kwargs):
    _, _, build, optimizer = MODELS[model_name]
    with xn.use_device("cuda"):
        model = build()
        history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), optimizer(model), data, epochs=epochs,
                         batch_size=batch, seed=0, progress=False, **kwargs)
    return float(numpy.median(history.epoch_seconds[1:]))


def host_batches_seconds(x, t, batch):
    """One pass of xn.data.Loader over the memory-maps: the host's share of a streamed epoch."""
    start = time.perf_counter()
    for _ in xn.data.Loader(x, t, batch, shuffle=True, seed=0):
        pass
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="mlp")
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    rng = numpy.random.default_rng(0)
    title, shape = MODELS[args.model][:2]
    x = rng.random((args.samples, *shape), dtype=numpy.float32)
    t = rng.integers(0, 10, args.samples)
    nbytes = x.nbytes + t.nbytes
    print(f"{xn.Device('cuda')}: {title}, recorded step; {args.samples} samples ({nbytes / 2**20:.0f} MiB); "
          f"median epoch of {args.epochs - 1} after the first")
    print("| batch | copied once: epoch s | streamed: epoch s | streamed / copied once | host batches alone s "
          "| streamed GB/s | page-locked copy alone GB/s | streamed / copy alone |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        xm, tm = xn.datasets.load_memmap(xn.datasets.to_memmap(folder, x, t))
        for batch in args.batch:
            once, streamed = [], []
            for _ in range(2):  # in turns
                once.append(epoch_seconds(args.model, (x, t), batch, args.epochs, stream=False))
                streamed.append(epoch_seconds(args.model, (xm, tm), batch, args.epochs, stream=True))
            once, streamed = min(once), min(streamed)
            host = min(host_batches_seconds(xm, tm, batch) for _ in range(2))
            copy = pinned_copy_bandwidth(batch * (x[0].nbytes + t.itemsize))
            rate = nbytes / streamed
            print(f"| {batch} | {once:.3f} | {streamed:.3f} | {streamed / once:.2f} | {host:.3f} | "
                  f"{rate / 1e9:.2f} | {copy / 1e9:.2f} | {rate / copy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
