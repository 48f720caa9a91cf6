"""Checks of softmax cross-entropy's logits and labels, shared by the loss layer and
``xn.functional.softmax_cross_entropy`` (and its autodiff rule)."""
from __future__ import annotations

import numpy

from . import _validate
from .backends import array_device, get_backend
from .errors import DTypeError, ShapeError

_REGRESSION = "For regression targets use loss_fn=MeanSquaredError() (xn.nn.MeanSquaredError)."


def softmax_targets(name, y, t, labels_checked=False):
    """Check logits ``y`` and labels ``t`` for softmax cross-entropy; returns ``(t, bad)``.

    Shapes and dtypes are checked everywhere (no device read): y is (N, C) floating with
    C >= 2, t is integer class indices (N,) or one-hot / soft labels (N, C). Label values:
    - ``t`` a NumPy array (on the host, where reading it is free): a label outside 0..C-1,
      or a soft label outside [0, 1], raises ValueError here; ``bad`` is None.
    - ``t`` on a device: reading it would cost a copy per step (and a host read is refused
      while a step is recorded), so the check runs on the device: ``bad`` marks the samples
      with a label out of range, which the backend turns into a NaN loss and gradient (as
      PyTorch's device-side assert refuses them on CUDA), and the returned ``t`` has their
      indices replaced by 0 so that no gather reads out of bounds. (``fit`` and ``evaluate``
      check integer labels on the host before they start, so they refuse with a message,
      and tell the loss so: ``labels_checked`` skips the device check of class indices.)
    """
    n, classes = _shapes(name, y, t)
    if t.ndim == 1 and labels_checked:
        return t, None  # the caller (fit) checked these class indices on the host already
    if isinstance(t, numpy.ndarray):
        _check_host_values(name, t, classes)
        return t, None
    xp = get_backend(*array_device(t)).xp
    if t.ndim == 1:  # negative labels, seen as unsigned, are larger than any class count
        bad = (t.view(t.dtype.str.replace("i", "u")) if t.dtype.kind == "i" else t) >= classes
        return xp.where(bad, 0, t), bad
    return t, (xp.abs(t - 0.5) > 0.5).any(axis=1)  # outside [0, 1]


def _shapes(name, y, t):
    """(N, C) once ``y`` and ``t`` have the shapes and dtypes softmax cross-entropy takes."""
    if y.ndim != 2:
        hint = " For one sample, use y.reshape(1, -1) and t of shape (1,)." if y.ndim == 1 else ""
        raise ShapeError(f"{name}: logits y must be (N, C), got shape {tuple(y.shape)}.{hint}")
    if y.dtype.kind != "f":
        raise DTypeError(f"{name}: logits y must be floating point, got {y.dtype}; "
                         f"use y.astype('float32') (or float64).")
    n, classes = y.shape
    _validate.nonempty_batch(name, y)
    if classes < 2:
        raise ShapeError(f"{name}: y has shape {tuple(y.shape)}, {classes} class column(s); softmax over "
                         f"fewer than 2 classes is constant, so this loss would say nothing about the "
                         f"model. A classifier needs y of shape (N, C) with C >= 2. {_REGRESSION}")
    if t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise DTypeError(f"{name}: t of shape {tuple(t.shape)} and dtype {t.dtype} is not class "
                             f"indices; labels of shape (N,) must be integers 0..{classes - 1} "
                             f"(t.astype(int)), or give one-hot / soft labels of shape (N, {classes}). "
                             f"{_REGRESSION}")
    elif t.ndim != 2 or t.shape[1] != classes or t.dtype.kind not in "biuf":
        raise ShapeError(f"{name} got y of shape {tuple(y.shape)} and t of shape {tuple(t.shape)} "
                         f"({t.dtype}); expected y (N, C) and t as integer class indices (N,) or "
                         f"one-hot / soft labels (N, C) = {(n, classes)}.")
    if t.shape[0] != n:
        raise ShapeError(f"{name}: y has {n} samples but t has {t.shape[0]}.")
    return n, classes


def _check_host_values(name, t, classes):
    if t.ndim == 1:
        low, high = int(t.min()), int(t.max())
        if low < 0 or high >= classes:
            where = int(numpy.argmax((t < 0) | (t >= classes)))
            label = int(t[where])
            why = f" (NumPy would silently read it as class {classes + label})" if -classes <= label < 0 else ""
            raise ValueError(f"{name}: label {label} at position {where} is not a class index for y "
                             f"with {classes} columns{why}; valid labels are 0..{classes - 1}. Fix or "
                             f"drop that sample.")
    elif t.dtype.kind == "f":
        inside = (t >= 0) & (t <= 1)  # False for NaN too
        if not inside.all():
            i, j = (int(k) for k in numpy.unravel_index(numpy.argmin(inside), t.shape))
            raise ValueError(f"{name}: soft label t[{i}, {j}] = {float(t[i, j])} is outside [0, 1]; one-hot "
                             f"or soft labels are probabilities (a zero row masks its sample). "
                             f"{_REGRESSION}")
    elif t.dtype.kind in "iu" and t.size and (t.min() < 0 or t.max() > 1):
        i, j = (int(k) for k in numpy.unravel_index(numpy.argmax((t < 0) | (t > 1)), t.shape))
        raise ValueError(f"{name}: one-hot label t[{i}, {j}] = {int(t[i, j])} is not 0 or 1. {_REGRESSION}")
