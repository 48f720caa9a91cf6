"""Five epochs of the TF2 MLP on MNIST on cuda, timed from process start (imports and
MNIST loading included), the step recorded as a CUDA graph or run kernel by kernel:

    python bench/gpu_fit5.py graph|eager BATCH_SIZE
"""
import time

START = time.perf_counter()

import sys  # noqa: E402 (imports are part of what is timed)

import xpnet as xn  # noqa: E402


def main(mode, batch):
    (x, t), (xt, tt) = xn.datasets.mnist()
    loaded = time.perf_counter()
    with xn.use_device("cuda"):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(784, 100), xn.nn.ReLU(), xn.nn.Affine(100, 50),
                                 xn.nn.ReLU(), xn.nn.Affine(50, 10))
        h = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), epochs=5,
                   batch_size=batch, validation=(xt, tt), seed=0, graph=mode == "graph", progress=False)
    end = time.perf_counter()
    print(f"graph={mode == 'graph'} batch={batch}: total {end - START:.2f} s (import+load {loaded - START:.2f} s), "
          f"epochs {', '.join(f'{s:.2f}' for s in h.epoch_seconds)} s, val acc {h.val_accuracy[-1]:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
