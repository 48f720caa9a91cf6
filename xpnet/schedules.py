"""Learning-rate schedules: each sets ``optimizer.lr`` once an epoch.

The rate lives on the device (``Optimizer.lr``), so a schedule changes what the next step
reads, recorded steps included: nothing is recorded again. ``fit(..., schedule=s)`` calls
``s.step()`` after every epoch; a loop of your own calls it where it likes.

A schedule's state is the epochs done and the base rate; ``state_dict()`` and
``load_state_dict()`` give and take it, and ``xn.save(model, path, optimizer=opt,
schedule=s)`` / ``xn.load(model, path, optimizer=opt, schedule=s)`` keep it with the
checkpoint (the optimizer's current rate is saved with the optimizer), so a resumed run
follows the same rates as one that never stopped. Its other settings (``step_size``,
``gamma``, ...) are the constructor's, as an optimizer's hyperparameters are.
"""
from __future__ import annotations

import math

from . import _validate


class Schedule:
    """Base: ``rate(epoch)`` for the epochs done so far; ``step()`` applies the next one."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def rate(self, epoch: int) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a checkpoint keeps: ``{"epoch": epochs done, "base_lr": the starting rate}``."""
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def checked_state(self, state: dict) -> dict:
        """``state`` (as ``state_dict`` gives) checked: raises ValueError or TypeError saying
        what does not fit, before anything is changed."""
        owner = type(self).__name__
        if not isinstance(state, dict) or set(state) != {"epoch", "base_lr"}:
            raise ValueError(f"{owner}: a schedule's state is a record with 'epoch' and 'base_lr', got {state!r}.")
        epoch = _validate.integer(owner, "epoch", state["epoch"], minimum=0)
        if epoch > 2 ** 53:
            raise ValueError(f"{owner}: epoch must be at most 2**53, got {epoch}.")
        base_lr = _validate.real(owner, "base_lr", state["base_lr"], low=0, low_open=True)
        self._check_base(base_lr)
        return {"epoch": epoch, "base_lr": base_lr}

    def _check_base(self, base_lr: float) -> None:
        """Raise ValueError if the settings cannot go with ``base_lr`` (Cosine: min_lr)."""

    def load_state_dict(self, state: dict) -> None:
        """Take ``state`` (checked first; nothing changes if it does not fit). The optimizer's
        rate is not set here: it is the optimizer's state (``xn.load`` restores both)."""
        state = self.checked_state(state)
        self.epoch, self.base_lr = state["epoch"], state["base_lr"]

    def step(self) -> float:
        """One more epoch done: set and return the rate for the next."""
        self.epoch += 1
        self.optimizer.lr = self.rate(self.epoch)
        return self.optimizer.lr


class StepDecay(Schedule):
    """lr * gamma ** (epoch // step_size): the rate falls by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        self.step_size = _validate.integer("StepDecay", "step_size", step_size)
        self.gamma = _validate.real("StepDecay", "gamma", gamma, low=0, high=1, low_open=True)

    def rate(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class Cosine(Schedule):
    """From lr down to ``min_lr`` along half a cosine over ``epochs`` epochs, then ``min_lr``."""

    def __init__(self, optimizer, epochs: int, min_lr: float = 0.0):
        super().__init__(optimizer)
        self.epochs = _validate.integer("Cosine", "epochs", epochs)
        self.min_lr = _validate.real("Cosine", "min_lr", min_lr, low=0, high=self.base_lr, high_open=True)

    def _check_base(self, base_lr):
        if not self.min_lr < base_lr:
            raise ValueError(f"Cosine: min_lr={self.min_lr!r} must be below the saved base_lr={base_lr!r}; "
                             f"build the schedule with a smaller min_lr.")

    def rate(self, epoch):
        done = min(epoch, self.epochs) / self.epochs
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * done))
