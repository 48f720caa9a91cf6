"""Augmentation on the device, for ``xn.fit(..., transform=...)``.

A transform is called as ``transform(xb, tb) -> (xb, tb)`` on every training batch, on the
device, inside the training step, so a recorded step (``fit(graph=True)``: a CUDA graph, or
sim's recording) runs it too. Its random draws therefore come from the device: Philox4x32-10
(``backend.philox4x32``, the generator Dropout uses) under the transform's key, at a counter
that lives on the device and is advanced on every call, so each replay of a recorded step
draws anew. The same seed gives the same draws on cpu, sim and CUDA; without a seed the
transform takes one from ``xn.seed``'s generator when it is built, so a seeded run is
reproducible.

    augment = xn.augment.RandomTranslate(max_shift=2)
    xn.fit(model, loss_fn, optimizer, (x, t), transform=augment)
"""
from __future__ import annotations

import numpy

from . import _validate
from .device import device_of
from .errors import ShapeError
from .nn.init import generator
from .transfer import to_device

_MASK32 = 0xFFFFFFFF
_STREAM = 0x41554731  # Philox's third counter word for augmentation draws ("AUG1"): apart from Dropout's


def _holds(dtype, value) -> bool:
    """Whether integer ``dtype`` holds ``value`` exactly."""
    info = numpy.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


class RandomTranslate:
    """Shift each image of a batch (N, C, H, W) by its own whole number of pixels, dy and dx
    each drawn uniformly from -max_shift..max_shift, filling the uncovered border with
    ``fill`` (the same as torchvision's ``RandomCrop(size=(H, W), padding=max_shift)``).
    Labels pass through unchanged.

    Sample i of call k takes Philox4x32-10 counter (offset_k + j, 0, "AUG1", 0) for
    j = 0..ceil(N / 2) - 1 (four 32-bit words each: word i is dy's, word N + i is dx's, in
    the order the counters give them), a shift being (word >> 8) * (2 max_shift + 1) >> 24;
    ``offset`` is a 0-d counter on the device, one per device, advanced by ceil(N / 2) per call.
    """

    max_shift = _validate.Setting(lambda owner, name, value: _validate.integer(owner, name, value, minimum=0))
    fill = _validate.Setting(_validate.real)

    def __init__(self, max_shift: int = 2, fill: float = 0.0, seed=None):
        self.max_shift, self.fill = max_shift, fill
        self.seed = int(generator().integers(2 ** 63)) if seed is None else _validate.integer(
            "RandomTranslate", "seed", seed, minimum=0)
        if self.seed >= 2 ** 64:
            raise ValueError(f"RandomTranslate: seed must be below 2**64 (Philox's 64-bit key), got {self.seed}.")
        self.key = (self.seed & _MASK32, (self.seed >> 32) & _MASK32)
        self._offsets = {}  # device -> the counter (0-d uint64 on it)
        self._work = {}     # (device, shape, dtype) -> the step's buffers (fixed, so a recording can own them)
        self._reuse = False  # set by fit's step around its call: the output may be a reused buffer

    def __repr__(self):
        return f"RandomTranslate(max_shift={self.max_shift}, fill={self.fill:g}, seed={self.seed})"

    def random_state(self) -> dict:
        """The counters that decide the next draws, device -> 0-d array (restore to redraw)."""
        return dict(self._offsets)

    def __call__(self, xb, tb):
        device = device_of(xb)
        if xb.ndim != 4:
            raise ShapeError(f"RandomTranslate takes image batches (N, C, H, W), got shape {tuple(xb.shape)}; "
                             f"load images unflattened (xn.datasets.mnist(flatten=False)) or reshape them first.")
        if self.max_shift == 0 or xb.shape[0] == 0:
            return xb, tb
        if xb.dtype.kind in "iu" and not _holds(xb.dtype, self.fill):
            raise ValueError(f"RandomTranslate: fill={self.fill:g} is not a value of the batch's {xb.dtype} (it would "
                             f"wrap to another); give a fill the images can hold, or float images.")
        with device.backend.activate():
            return self._translate(device, xb), tb

    def _buffers(self, device, shape, dtype):
        key = (device, shape, numpy.dtype(dtype), self.max_shift, self.fill)  # settings changed later: new buffers
        work = self._work.get(key)
        if work is None:
            xp, s = device.xp, self.max_shift
            n, c, h, w = shape
            hp, wp = h + 2 * s, w + 2 * s
            blocks = -(-n // 2)
            # the flat index of (sample n, channel c, row i, column j) of the padded batch
            base = (((numpy.arange(n)[:, None] * c + numpy.arange(c)) * hp)[:, :, None] + numpy.arange(h))
            base = (base * wp)[..., None] + numpy.arange(w)
            work = self._work[key] = {
                "padded": xp.full((n, c, hp, wp), self.fill, dtype=dtype),
                "counter": xp.zeros((4, blocks), dtype=numpy.uint64),
                "count": xp.arange(blocks, dtype=numpy.uint64),
                "shift": xp.empty(2 * n, dtype=numpy.uint64),
                "index": xp.empty((n, c, h, w), dtype=numpy.int64),
                "base": to_device(base.astype(numpy.int64), device),  # a counted copy, once per shape
                "out": xp.empty(shape, dtype=dtype),  # the output inside fit's step
            }
        return work

    def _counter(self, device):
        offset = self._offsets.get(device)
        if offset is None:
            offset = self._offsets[device] = device.xp.zeros((), dtype=numpy.uint64)
        return offset

    def _translate(self, device, x):
        xp, backend, s = device.xp, device.backend, self.max_shift
        n, _, h, w = x.shape
        work, offset = self._buffers(device, x.shape, x.dtype), self._counter(device)
        padded, counter = work["padded"], work["counter"]
        padded[:, :, s:s + h, s:s + w] = x  # the border keeps its fill
        # counters offset + j: low word, high word, the augmentation stream, 0
        xp.add(work["count"], offset, out=counter[0])
        xp.right_shift(counter[0], 32, out=counter[1])
        counter[0] &= _MASK32
        counter[2] = _STREAM
        counter[3] = 0
        offset += counter.shape[1]
        words = backend.philox4x32(counter, self.key).reshape(-1)[:2 * n]
        shift = work["shift"]
        xp.right_shift(words, 8, out=shift)
        shift *= 2 * s + 1
        shift >>= 24  # uniform in 0..2s: the window's top-left corner in the padded image
        shift[:n] *= padded.shape[3]  # dy rows of wp elements each
        shift[:n] += shift[n:]
        index = work["index"]
        xp.add(work["base"], shift[:n].view(numpy.int64)[:, None, None, None], out=index)
        # inside fit's step the output is a buffer of the step's own (a recording owns it); a
        # call of yours (a Loader's transform, which reads batches ahead) gets a new array
        return xp.take(padded.reshape(-1), index, out=work["out"] if self._reuse else None)
