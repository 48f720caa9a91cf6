"""Session 4, tried and dropped: the scatter way of a stride-1 input gradient (W.T @ dy, then
col2im) over chunks of about 2 MiB of W.T @ dy instead of the whole batch, timed against the
committed whole-batch way on the speedrun's training step (batch 128, Adam), the two
alternating round by round in one process (_alternate.py).

    python bench/results/cpu-2026-11-29/ab_scatter_chunks.py [ROUNDS]
"""
import sys
from pathlib import Path

import numpy
from _alternate import alternate, setting

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

from xpnet.backends.routines.conv import ConvRoutines  # noqa: E402

WHOLE = ConvRoutines._input_grad


def _chunked(self, dy, W, x_shape, stride, pad, product=None, scratch=None):
    """The scatter way chunk by chunk where ConvRoutines.CHUNKED; else the committed code."""
    f, c, kh, kw = W.shape
    if (not ConvRoutines.CHUNKED or stride != (1, 1)
            or self._input_grad_by_convolution(dy.shape, W.shape, x_shape, pad)):
        return WHOLE(self, dy, W, x_shape, stride, pad, product, scratch)
    n, _, oh, ow = dy.shape
    run, k = oh * ow, c * kh * kw
    chunk = max(1, (2 << 20) // (k * run * dy.itemsize))
    product = numpy.empty((f, dy.size // f), dy.dtype)
    self._product_layout(dy, product.reshape(f, n, oh, ow))
    cols, dx = numpy.empty((k, chunk * run), dy.dtype), numpy.empty(x_shape, dy.dtype)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out = cols[:, :(e - s) * run] if e - s == chunk else numpy.empty((k, (e - s) * run), dy.dtype)
        self.matmul(W.reshape(f, -1).T, product[:, s * run:e * run], out=out)
        dx[s:e] = self.col2im(out, (e - s,) + tuple(x_shape[1:]), kh, kw, stride, pad)
    return dx


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    ConvRoutines._input_grad, ConvRoutines.CHUNKED = _chunked, False
    x, t = models._data(128, (1, 28, 28))
    values = {"whole": False, "chunked": True}
    steps = {}
    for label, value in values.items():
        ConvRoutines.CHUNKED = value
        steps[label] = models._xpnet_step(models.speedrun_cnn(), x, t)
    times = alternate(steps, rounds, turn=lambda label: setting(ConvRoutines, "CHUNKED", values[label]))
    for label, ms in times.items():
        print(f"{label}: median {numpy.median(ms):.2f} ms  rounds: {' '.join(f'{v:.1f}' for v in ms)}")


if __name__ == "__main__":
    main()
