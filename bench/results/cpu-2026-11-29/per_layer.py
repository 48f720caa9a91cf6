"""DeepConvNet's full training step (batch 100, Adam) and each of its convolutions alone
(forward and backward, the input's gradient too but for the first), with one framework per
process, so that no other thread pool runs in between (PyTorch's OpenMP threads and
OpenBLAS's slow each other down when they alternate within one process).

    python bench/results/cpu-2026-11-29/per_layer.py torch
    python bench/results/cpu-2026-11-29/per_layer.py xpnet
"""
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

# name, in and out channels, height = width, pad, pooled after
LAYERS = [("conv1 1->16 28x28", 1, 16, 28, 1, False), ("conv2 16->16 28x28 +pool", 16, 16, 28, 1, True),
          ("conv3 16->32 14x14", 16, 32, 14, 1, False), ("conv4 32->32 14x14 pad 2 +pool", 32, 32, 14, 2, True),
          ("conv5 32->64 8x8", 32, 64, 8, 1, False), ("conv6 64->64 8x8 +pool", 64, 64, 8, 1, True)]


def _ms(step, rounds=10):
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - start) / rounds * 1e3


def _torch_layer(torch, cin, cout, x, pad, pool, first):
    nn = torch.nn
    layer = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(), *([nn.MaxPool2d(2)] if pool else []))
    x = torch.from_numpy(x).requires_grad_(not first)
    dout = torch.ones_like(layer(x))

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(dout)
    return step


def _xpnet_layer(xn, cin, cout, x, pad, pool, first):
    nn = xn.nn
    layer = nn.Sequential(nn.Conv2D(cin, cout, 3, pad=pad), nn.ReLU(), *([nn.MaxPool2D(2)] if pool else []))
    dout = numpy.ones(layer(x).shape, numpy.float32)
    layer._need_dx = not first  # as inside the model: every layer but the first passes a gradient on

    def step():
        layer(x)
        layer.backward(dout)
    return step


def main():
    which = sys.argv[1]
    x, t = models._data(100, (1, 28, 28))
    if which == "torch":
        torch = models._torch()
        full, make = models._torch_step(models._torch_deep_convnet(torch), x, t, torch), \
            lambda *a: _torch_layer(torch, *a)
    else:
        import xpnet as xn
        full, make = models._xpnet_step(models.deep_convnet(), x, t), lambda *a: _xpnet_layer(xn, *a)
    print(f"{which}: the full DeepConvNet step {_ms(full):.1f} ms")
    rng, total = numpy.random.default_rng(0), 0.0
    for i, (name, cin, cout, hw, pad, pool) in enumerate(LAYERS):
        ms = _ms(make(cin, cout, rng.random((100, cin, hw, hw), dtype=numpy.float32), pad, pool, i == 0))
        total += ms
        print(f"{which}: {name} {ms:.2f} ms")
    print(f"{which}: the six convolutions {total:.1f} ms")


if __name__ == "__main__":
    main()
