"""Loss layers: ``loss = loss_fn(y, t)``, then ``loss_fn.backward()`` gives dL/dy.

The loss comes back as a 0-d array on the device (reading it as a Python float is a
device->host copy, so the training loop does that only now and then).
"""
from __future__ import annotations

from .. import _validate
from .._targets import softmax_targets
from ..device import common_device, device_of
from ..errors import ShapeError
from .wrapping import on_device, reusable


class _Loss:
    """``loss(y, t)`` checks the pair and runs ``forward(y, t)`` under their device;
    ``backward`` runs under it too."""

    classification = False
    graph_safe = True  # fit may record a step through it as a CUDA graph
    _unrecorded = ("t", "y", "probs", "backend")  # set by each call, not settings

    def __setattr__(self, name, value):
        """A NumPy number (a weight of a loss of yours) is kept as the Python number, which NumPy
        treats as weak: the loss computes in its inputs' dtype either way."""
        super().__setattr__(name, _validate.python_number(value))

    def __init__(self):
        self._work = {}
        self._labels_checked = False  # set by fit's step, for its call only: labels checked on the host

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward"):
            if name in cls.__dict__:
                setattr(cls, name, on_device(cls.__dict__[name]))

    def __call__(self, y, t):
        self._prepare(y, t, type(self).__name__)
        return self.forward(y, t)

    def _prepare(self, y, t, name):
        try:
            device, t_device = device_of(y), device_of(t)
        except TypeError:
            raise TypeError(f"{name} takes arrays y and t, got {type(y).__name__} and {type(t).__name__}.") from None
        if t_device != device:
            common_device((y, t), name)  # raises ImplicitTransferError naming both devices
        backend = device.backend
        if getattr(self, "backend", backend) is not backend:
            self.clear_workspace()  # scratch buffers of the last device: this call allocates its own
        self.backend = backend
        if y.ndim == 0 or t.ndim == 0:
            raise ShapeError(f"{name}: y and t need one sample per row; got shapes {tuple(y.shape)} "
                             f"and {tuple(t.shape)}.")
        if t.shape[0] != y.shape[0]:
            raise ShapeError(f"{name}: y has {y.shape[0]} samples but t has {t.shape[0]}.")
        _validate.nonempty_batch(name, y)

    def workspace(self, name, shape, dtype):
        return reusable(self._work, name, shape, dtype, self.backend.xp)

    def clear_workspace(self):
        self._work.clear()


class SoftmaxCrossEntropy(_Loss):
    """The book's SoftmaxWithLoss: mean cross-entropy of softmax(y) against labels t.

    ``t`` is class indices, shape (N,), or one-hot / soft labels, shape (N, C), each in
    [0, 1]; a row's loss is weighted by its sum (a zero row masks its sample). Labels out of
    range are refused (see ``softmax_targets``), and so is C = 1: for regression use
    ``MeanSquaredError``. ``probs`` holds softmax(y) after the forward pass.

    ``label_smoothing`` = e in [0, 1] trains against (1 - e) t + e / C instead of t, as
    PyTorch's ``cross_entropy(label_smoothing=e)`` does (a soft row of sum s takes
    (1 - e) t + e s / C, so a zero row still masks its sample).
    """

    classification = True

    label_smoothing = _validate.Setting(_validate.between(0, 1))

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, y, t):
        t, bad = softmax_targets("SoftmaxCrossEntropy", y, t, labels_checked=self._labels_checked)
        self.t = t
        loss, self.probs = self.backend.softmax_cross_entropy(
            y, t, out=self.workspace("probs", y.shape, y.dtype), bad=bad, label_smoothing=self.label_smoothing)
        return loss

    def backward(self, dout=1.0):
        """dL/dy, a fresh array (the caller may keep it: a later call does not overwrite it)."""
        return self.backend.softmax_cross_entropy_backward(self.probs, self.t, dout,
                                                           label_smoothing=self.label_smoothing)


class MeanSquaredError(_Loss):
    """mean((y - t)^2) over every element, as Chainer's F.mean_squared_error."""

    def forward(self, y, t):
        if y.shape != t.shape:
            raise ShapeError(f"MeanSquaredError got y of shape {tuple(y.shape)} and t of shape "
                             f"{tuple(t.shape)}; they must match.")
        self.y, self.t = y, t
        return self.backend.mean_squared_error(y, t)

    def backward(self, dout=1.0):
        return self.backend.mean_squared_error_backward(dout, self.y, self.t)
