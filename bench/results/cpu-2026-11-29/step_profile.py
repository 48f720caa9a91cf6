"""Where a training step's time goes, without a profiler: the exclusive wall time of every
method of the cpu backend (what it spent outside the backend methods it called), per step,
over 100 steps of ``fit`` on the first 12,800 MNIST images, after one warm-up pass.

    python bench/results/cpu-2026-11-29/step_profile.py            # the speedrun's CNN, batch 128
"""
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

import xpnet as xn  # noqa: E402

SKIP = {"_scratch", "_conv_geometry", "_kernel_windows", "_conv_chunk", "_input_grad_by_convolution"}


def _timed(backend, spent, calls):
    """Wrap every method of ``backend`` so that each adds its exclusive time to ``spent``."""
    stack = []

    def wrap(name, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            stack.append(0.0)
            try:
                return method(*args, **kwargs)
            finally:
                took, inner = time.perf_counter() - start, stack.pop()
                spent[name] += took - inner
                calls[name] += 1
                if stack:
                    stack[-1] += took
        return timed
    for name in dir(type(backend)):
        method = getattr(backend, name, None)
        if callable(method) and not name.startswith("__") and name not in SKIP and not isinstance(method, type):
            setattr(backend, name, wrap(name, method))


def main():
    model = models.speedrun_cnn()
    (x, t), _ = xn.datasets.mnist(flatten=False)
    n, batch = 12800, 128
    opt = xn.optim.Momentum(model, lr=0.3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xn.optim.schedules.OneCycle(opt, max_lr=0.3, total_steps=2 * n // batch, pct_start=0.25)
    loss = xn.nn.SoftmaxCrossEntropy(label_smoothing=0.1)

    def epoch():
        xn.fit(model, loss, opt, (x[:n], t[:n]), epochs=1, batch_size=batch, drop_last=True, progress=False)
    epoch()
    spent, calls = collections.defaultdict(float), collections.Counter()
    _timed(model.layers[0].backend, spent, calls)
    start = time.perf_counter()
    epoch()
    whole, steps = time.perf_counter() - start, n // batch
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1])[:20]:
        print(f"{name:32s} {seconds / steps * 1e3:7.3f} ms a step, {calls[name] / steps:.0f} calls")
    print(f"all methods {sum(spent.values()) / steps * 1e3:.3f} ms of a {whole / steps * 1e3:.3f} ms step")


if __name__ == "__main__":
    main()
