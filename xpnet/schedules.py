"""Learning-rate schedules: each sets ``optimizer.lr`` once an epoch.

The rate lives on the device (``Optimizer.lr``), so a schedule changes what the next step
reads, recorded steps included: nothing is recorded again. ``fit(..., schedule=s)`` calls
``s.step()`` after every epoch; a loop of your own calls it where it likes.
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

    def rate(self, epoch):
        done = min(epoch, self.epochs) / self.epochs
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * done))
