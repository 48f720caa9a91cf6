"""``evaluate`` and ``predict``: the model in eval mode over a set, batch by batch, each
batch of host data copied to the device just before its forward (so memory-maps larger
than the device work)."""
from __future__ import annotations

import contextlib

import numpy

from .. import _validate
from ..device import Device, use_device
from ..errors import ShapeError
from ..nn.losses import SoftmaxCrossEntropy
from ..transfer import array_or_host, to_device, to_host
from .parallel import processes, span
from .sources import (
    LabelCheck,
    _numeric_shape,
    check_batch,
    check_finite,
    check_pair,
    class_indices,
    is_batches,
)


@contextlib.contextmanager
def evaluating(model):
    """Eval mode on the model's device inside the block; the train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with use_device(model.device) as device:
            yield device
    finally:
        model.train(was_training)


def predict(model, x, batch_size: int = 1000):
    """The model's outputs for ``x`` in eval mode, batch by batch, as one array on the
    model's device; each batch of host input is copied there just before its forward, so
    a memory-mapped ``x`` larger than the device works. ``x`` may also be what ``fit`` and
    ``evaluate`` take (a pair ``(x, t)``, a list or tuple of two items of one length, or an
    iterable of ``(xb, tb)`` batches such as a Loader: the labels are not read), or a list or
    iterable of input batches. Two arrays of one shape (any dtypes) could be either a pair or
    two batches, and are refused. Move the result with ``xn.to_host``."""
    batch_size = _validate.integer("predict", "batch_size", batch_size)
    x = _inputs_of_pair(x)
    if _input_batches(x):
        batches = (_finite(array_or_host(_inputs_of(b), f"predict input, batch {k}"), f"predict input, batch {k}")
                   for k, b in enumerate(x))
    else:
        x = array_or_host(x, "predict input")
        if x.ndim == 0 or len(x) == 0:
            raise ShapeError("predict got no samples (an input of length 0); pass at least one.")
        check_finite(x, "predict input")
        batches = (x[lo:lo + batch_size] for lo in range(0, len(x), batch_size))
    with evaluating(model) as device:
        outputs = [model.forward(to_device(b, device)) for b in batches]
        if not outputs:
            raise ShapeError("predict got no samples (an empty iterable of batches).")
        return device.xp.concatenate(outputs)


def _input_batches(x) -> bool:
    """Whether predict's ``x`` is batches (of inputs, or ``(xb, tb)``) rather than one input."""
    if isinstance(x, (list, tuple)):
        return len(x) > 0 and (getattr(x[0], "ndim", 0) >= 1 or is_batches(x))
    return is_batches(x)


def _inputs_of_pair(x):
    """The inputs of ``x`` if it is a pair (x, t) as fit reads one, else ``x`` as given."""
    if not isinstance(x, (list, tuple)) or len(x) != 2 or is_batches(x):
        return x
    if not any(hasattr(v, "shape") for v in x) and _numeric_shape(x):
        return x  # nested numbers: one input, as [[0, 1], [1, 0]]
    shapes = [_numeric_shape(v) for v in x]
    if not all(shapes) or shapes[0][0] != shapes[1][0]:
        return x  # two input batches
    if shapes[0] == shapes[1]:
        raise ValueError(f"predict got two arrays of one shape {tuple(shapes[0])}: a pair (x, t) or two batches "
                         f"of inputs? Pass x alone, or the batches as an iterator (iter([xb1, xb2])).")
    return x[0]


def _inputs_of(batch):
    """A batch's inputs: ``xb`` of an ``(xb, tb)`` batch (a tuple, as a Loader gives; a list
    holding an array, as fit reads one; a list of rows and labels of other shapes), else the
    batch itself (an array, or the rows of a batch, two images of one shape included)."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        return batch
    if isinstance(batch, tuple) or any(hasattr(v, "shape") for v in batch):
        return batch[0]
    shapes = [_numeric_shape(v) for v in batch]
    pair = all(shapes) and shapes[0] != shapes[1] and shapes[0][:1] == shapes[1][:1]
    return batch[0] if pair else batch


def _finite(batch, what):
    check_finite(batch, what)
    return batch


def _evaluation_batches(data, batch_size, parallel, labels):
    """(xb, tb) pairs of ``data``: this rank's contiguous part of a pair (checked now, and
    compared across ranks), in batches of ``batch_size``, sliced as they are used; or the
    batches of an iterable, each checked as it comes."""
    if is_batches(data):
        return _checked(data, labels)
    x, t = check_pair(data, "evaluate data")
    labels.add(t, "evaluate data")
    parallel.check_sizes("evaluate", {"samples": len(x)})
    lo, hi = span(len(x), parallel.rank, parallel.size)
    return ((x[k:min(k + batch_size, hi)], t[k:min(k + batch_size, hi)]) for k in range(lo, hi, batch_size))


def _checked(batches, labels):
    for k, batch in enumerate(batches):
        where = f"evaluate data, batch {k}"
        xb, tb = check_batch(batch, where)
        labels.add(tb, where)
        yield xb, tb


def evaluate(model, data, device=None, batch_size: int = 1000, loss_fn=None, distributed=None) -> dict:
    """Mean loss and accuracy of ``model`` on ``data`` in eval mode: a pair ``(x, t)`` of
    arrays (each batch copied to the device as it is used, so memory-maps larger than the
    device work), or an iterable of ``(x, t)`` host batches.

    ``loss_fn`` defaults to SoftmaxCrossEntropy; accuracy is None for a loss that is not
    a classification loss, and NaN where the model's outputs are not finite. Host data
    holding NaN or +-inf is refused (``ValueError`` naming the first such value's position).
    The model's train/eval mode is restored afterwards. In a distributed run
    (``distributed`` as in ``fit``) each rank evaluates its contiguous part of a pair (an
    iterable: the batches it is given) and the sums are reduced, so every rank returns the
    whole set's figures.
    """
    batch_size = _validate.integer("evaluate", "batch_size", batch_size)
    parallel, labels = processes(distributed, "evaluate"), LabelCheck()
    batches = _evaluation_batches(data, batch_size, parallel, labels)
    device = model.device if device is None else Device(device)
    if model.device != device:
        raise ValueError(f"evaluate: the model is on {model.device}, not {device}; "
                         f"move it first with model.to('{device}').")
    loss_fn = SoftmaxCrossEntropy() if loss_fn is None else loss_fn
    classify = getattr(loss_fn, "classification", False)
    with evaluating(model):
        xp = device.xp
        total, correct = xp.zeros((), dtype=numpy.float64), xp.zeros((), dtype=numpy.int64)
        unfit = xp.zeros((), dtype=numpy.int64)  # outputs that are not finite: no accuracy from them
        seen = 0
        for xb, tb in batches:
            xb, tb = to_device((xb, tb), device)
            y = model.forward(xb)
            if classify:
                labels.against(y.shape[1])
            total += loss_fn(y, tb) * len(xb)
            if classify:
                correct += (y.argmax(axis=1) == class_indices(tb)).sum()
                unfit += (~xp.isfinite(y)).sum()
            seen += len(xb)
        sums = parallel.sum(numpy.array([float(to_host(total)), float(to_host(correct)), seen,
                                         float(to_host(unfit))], dtype=numpy.float64))
        total, correct, seen, unfit = sums
        if seen == 0:
            raise ShapeError("evaluate data is empty.")
    accuracy = (float("nan") if unfit else float(correct / seen)) if classify else None
    return {"loss": float(total / seen), "accuracy": accuracy}
