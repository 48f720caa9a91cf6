"""An optimizer's flat groups (``Optimizer.groups()``): the parameters of one device and
dtype, their gradients and the optimizer's state laid end to end, so an update is one pass
over the whole model."""
from __future__ import annotations

import numpy


class Group:
    """The parameters of one device and dtype laid end to end in flat buffers (``p``,
    ``g``, each state, scratch), and the step's per-step values as 0-d arrays on that
    device: the step count ``t`` and the learning rate ``lr``. Kept on the device, they
    are read and advanced by the step's own kernels, so a recorded step replays right.

    ``g`` is public: the model's gradients are views into it, so code between ``backward``
    and ``step`` may scale or sum it in place (a data-parallel fit averages it across
    ranks with one allreduce per group)."""

    def __init__(self, device, p, g, state, scratch, decayed, t, lr, scalars):
        self.backend, self.xp = device.backend, device.xp
        self.p, self.g, self.state, self.scratch, self.decayed = p, g, state, scratch, decayed
        self.t, self.lr = t, lr
        self.scalars = scalars  # the optimizer's scalar_state: name -> 0-d float64 array
        self.work = {}  # named 0-d scratch for per-step values (Adam's corrected rate)

    def scalar(self, name, dtype):
        value = self.work.get(name)
        if value is None:
            value = self.work[name] = self.xp.empty((), dtype=dtype)
        return value


def flat_buffers(xp, names, total, dtype) -> dict:
    """Flat buffers of ``total`` elements, one per name, as views into one allocation.

    Buffers of the same size allocated one by one land a multiple of 4 KiB apart, and then
    a fused update reading p[i], g[i], m[i], v[i] together hits the same cache sets (4K
    aliasing; docs/performance.md has the measurement). Here buffer k starts
    k * 4 KiB / len(names) bytes (rounded down to 64, a cache line) past a 4 KiB boundary."""
    itemsize = numpy.dtype(dtype).itemsize
    stagger = max(64, 4096 // len(names) // 64 * 64)
    stride_bytes = -(-total * itemsize // 4096) * 4096 + stagger
    stride = stride_bytes // itemsize  # 64 is a multiple of every itemsize
    block = xp.empty(stride * len(names), dtype=dtype)
    return {name: block[k * stride:k * stride + total] for k, name in enumerate(names)}
