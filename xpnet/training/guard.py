"""The NaN guard: a callback that stops ``fit`` at the first loss, parameter, gradient or
optimizer state that is not finite, and puts the model and optimizer back as they were at
the last check that found everything finite.

The check runs on the device, and its count travels back with the chunk's losses
(``device_check``), so it costs no extra read and nothing inside the (recorded) step.
"""
from __future__ import annotations

import numpy

from ..errors import TrainingError
from ..transfer import to_host
from .callbacks import Callback, copy_arrays, model_arrays


class Snapshot:
    """A device-side copy of the model's parameters, buffers and random streams (Dropout's
    counters, a transform's such as RandomTranslate's: a run from a restored snapshot draws
    what it drew from there) and the optimizer's state.

    What is checked: parameters, their gradients and the optimizer's floating-point state
    must be finite; buffers must not be NaN (they may hold +-inf on purpose, a mask's -inf)."""

    def __init__(self, model, optimizer, transform=None):
        self.model, self.optimizer, self.transform = model, optimizer, transform
        self.copies, self.where = {}, "before the first step"
        self.take(None, 0)

    def _live(self):
        arrays = model_arrays(self.model)
        arrays.update({f"random/{k}": v for k, v in self.model.random_state().items()})
        arrays.update({f"random/transform {k}": v for k, v in _counters(self.transform).items()})
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.per_step_arrays().items()})
        return arrays

    def _watched(self, arrays, grads):
        """(label, array, whether +-inf is allowed) for every floating-point array to check."""
        watched = [(_label(name), a, name.startswith("buffer/")) for name, a in arrays.items()]
        if grads:
            watched += [(f"the gradient of {k!r}", g, False) for k, g in self.model.grads().items()]
        return [w for w in watched if w[1] is not None and w[1].dtype.kind in "fc"]

    def nonfinite(self, xp):
        """A device scalar (float32): how many of the live parameters, gradients, buffers and
        optimizer states hold NaN or inf (buffers: NaN). Computed on the device, read by the
        caller together with the losses."""
        count = xp.zeros((), dtype=numpy.float32)
        for a, inf_ok in self._flat():
            count += (xp.isnan(a) if inf_ok else xp.logical_not(xp.isfinite(a))).any()
        return count

    def _flat(self):
        """(array, whether +-inf is allowed) for what ``nonfinite`` checks, as the optimizer
        lays it out: each group's flat parameters, gradients, state and scalar state (a few
        arrays for the whole model, where the names are many), and the model's buffers."""
        watched = [(a, False) for group in self.optimizer.groups()
                   for a in (group.p, group.g, *group.state.values(), *group.scalars.values())]
        watched += [(b, True) for b in self.model.buffers().values()]
        return [(a, inf_ok) for a, inf_ok in watched if a.dtype.kind in "fc"]

    def nonfinite_names(self, copies=False) -> list:
        """The labels of the arrays that hold NaN or inf, read on the host (a failure's path
        only): the live ones, or (``copies``) the snapshot's."""
        arrays = self.copies if copies else self._live()
        bad = []
        for label, a, inf_ok in self._watched(arrays, grads=not copies):
            a = to_host(a)
            if (numpy.isnan(a) if inf_ok else ~numpy.isfinite(a)).any():
                bad.append(label)
        return bad

    def take(self, epoch, step):
        copy_arrays(self._live(), self.copies)
        if epoch is not None:
            self.where = f"after step {step} of epoch {epoch}"

    def restore(self) -> str:
        """Put the snapshot back; returns where it was taken, truthfully: the state before
        the first step was never checked, and is said to hold NaN or inf if it does."""
        for name, live in self._live().items():
            copy = self.copies.get(name)
            live[...] = 0 if copy is None else copy  # optimizer state born since: fresh
        if self.where == "before the first step":
            bad = self.nonfinite_names(copies=True)
            if bad:
                return (f"{self.where}, which already held NaN or inf in {_names(bad)}: training "
                        f"started from a broken state; start from finite weights (re-create or reload "
                        f"the model)")
        return self.where


def _counters(transform) -> dict:
    """An augmentation's counters (xpnet's ``random_state()``: arrays by device), or none for
    a transform without them (scikit-learn's ``random_state = 42``, a method of another kind)."""
    drawn = getattr(transform, "random_state", None)
    try:
        drawn = drawn() if callable(drawn) else None
    except TypeError:  # a random_state(seed) of another meaning
        return {}
    if not isinstance(drawn, dict):
        return {}
    return {k: v for k, v in drawn.items() if hasattr(v, "shape") and not isinstance(v, numpy.generic)}


def _label(name):
    kind, _, rest = name.partition("/")
    return {"param": "parameter", "buffer": "buffer", "random": "random counter",
            "optim": "optimizer state"}[kind] + f" {rest!r}"


def _names(labels, at_most=4):
    shown = ", ".join(labels[:at_most])
    return shown + (f" and {len(labels) - at_most} more" if len(labels) > at_most else "")


class NaNGuard(Callback):
    """Raise ``TrainingError`` at the first chunk whose losses, or the state after whose last
    step, hold NaN or inf, after restoring the snapshot of the last good check (taken at
    every chunk that passed, and before the first step)."""

    def on_train_begin(self, run):
        self.last_good = Snapshot(run.model, run.optimizer, run.step.transform)

    def device_check(self, run):
        return self.last_good.nonfinite(run.device.xp)

    def on_chunk_end(self, run, logs):
        self._check(logs["losses"], logs["check"], logs["epoch"], logs["step"] - len(logs["losses"]),
                    run.optimizer)
        self.last_good.take(logs["epoch"], logs["step"])

    def _check(self, chunk, bad_state, epoch, first_step, optimizer):
        """Raise TrainingError, after restoring the last good snapshot, if a loss of the chunk
        (steps first_step+1 ...) is NaN or inf or the state after its last step is (bad_state:
        the count of such arrays, from ``Snapshot.nonfinite``)."""
        bad = numpy.flatnonzero(~numpy.isfinite(chunk))
        if not bad.size and not bad_state:
            return
        last = first_step + len(chunk)
        broken = self.last_good.nonfinite_names()  # before the restore: what the step left behind
        if bad.size:
            step = first_step + int(bad[0]) + 1
            what = f"the loss became {chunk[bad[0]]} at epoch {epoch}, step {step}"
            if broken:
                what += f" ({_names(broken)} held NaN or inf after step {last})"
        else:
            steps = f"step {last}" if len(chunk) == 1 else f"steps {first_step + 1} to {last}"
            what = (f"{_names(broken) if broken else 'a parameter or gradient'} held NaN or inf after step "
                    f"{last} of epoch {epoch}, while the losses of {steps} were finite (an update overflowed, "
                    f"or an operation whose gradient is not finite where its value is: sqrt or log at 0, a "
                    f"division by 0)")
        where = self.last_good.restore()
        raise TrainingError(
            f"{what}. Training stopped, and the model and optimizer were restored to where they were "
            f"{where} (the last check with finite losses, parameters and gradients). Try a smaller "
            f"learning rate (lr={optimizer.lr}) or check the data and the model for NaN/inf.")
