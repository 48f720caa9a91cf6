"""Learning-rate schedules: per epoch (``StepDecay``, ``Cosine``: each sets ``optimizer.lr``
once an epoch) and per step (``OneCycle``, ``WarmupCosine``, ``WarmupLinear``: computed on the
device from the optimizer's step count at every step; see ``StepSchedule``).

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

import numpy

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


# -- per-step schedules ----------------------------------------------------------------------------
class StepSchedule:
    """Base of the per-step schedules: the rate of every step, computed on the device from the
    optimizer's step count before the update, so a recorded step (``fit(graph=True)``, a CUDA
    graph) follows the schedule without being recorded again.

    Building one attaches it to ``optimizer`` (``optimizer.step_schedule``): from then on each
    ``optimizer.step()`` sets the rate to ``rate(k)`` for its own step k (0 for the first) and
    updates with it; ``optimizer.lr`` reads the rate the last step used (before the first: the
    first step's). Setting ``optimizer.lr`` by hand is overwritten at the next step; ``detach()``
    hands the rate back. After the last scheduled step the rate stays at the schedule's final value.
    The rates are PyTorch's (or Hugging Face's), but ``Momentum`` keeps the book's velocity
    ``v = m v - lr g``, which takes PyTorch's SGD steps only while the rate is constant: with a
    changing rate its path differs from PyTorch's SGD with momentum under the same schedule.

    The schedule's position is the optimizer's step count, which ``xn.save(..., optimizer=opt)``
    keeps, so a resumed run follows the same rates as one that never stopped. ``state_dict()``
    is the peak rate ``{"base_lr": ...}`` (``xn.save(..., schedule=s)`` keeps it); the other
    settings are the constructor's. ``fit(..., schedule=s)`` may be given one, and calls its
    ``step()`` after every epoch, which does nothing: the optimizer steps it.

    A subclass writes ``_plan(base_lr)``, the phases: (first step, last step, rate at the
    first, rate at the last, "linear" or "cos") in order, each starting where the one before
    ended (a step on a boundary takes the earlier phase), and sets ``self._last``, the step
    from which the rate holds.
    """

    def __init__(self, optimizer, base_lr: float):
        if getattr(optimizer, "step_schedule", None) is not None:
            raise ValueError(
                f"{type(self).__name__}: the optimizer {type(optimizer).__name__} already follows "
                f"{type(optimizer.step_schedule).__name__}; one per-step schedule sets its rate. Call "
                f"its detach() first, or build this one for another optimizer.")
        self.optimizer = optimizer
        self.base_lr = base_lr

    def _attach(self):
        """Take over the optimizer's rate (after the subclass has checked its settings)."""
        self._phases = self._plan(self.base_lr)
        self.optimizer.step_schedule = self
        self.optimizer.lr = self.rate(self.optimizer.t)

    def _plan(self, base_lr) -> list:
        return []

    def detach(self) -> None:
        """Stop setting the optimizer's rate (it keeps the last one)."""
        if self.optimizer.step_schedule is self:
            self.optimizer.step_schedule = None

    def rate(self, step: int) -> float:
        """The rate of step ``step`` (0 for the first), on the host: the formula the device follows."""
        k = float(min(step, self._last))
        start = 0.0
        for i, (start, end, a, b, kind) in enumerate(self._phases):
            if k <= end or i == len(self._phases) - 1:
                pct = (k - start) / (end - start)
                if kind == "cos":
                    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (b - a) * pct + a
        raise AssertionError("a schedule has at least one phase")

    def write_rate(self, group) -> None:
        """Set ``group.lr`` (0-d, on the device) to the rate of the step ``group.t`` counts (the
        step being taken: ``t`` is already advanced), with device operations only, in float64:
        ``rate`` is the same formula on the host."""
        xp = group.xp
        k, rate, tmp = (group.scalar(f"schedule_{n}", numpy.float64) for n in ("k", "rate", "tmp"))
        chosen = group.scalar("schedule_chosen", numpy.bool_)
        xp.subtract(group.t, 1, out=k)
        xp.minimum(k, float(self._last), out=k)
        for i, (start, end, a, b, kind) in reversed(list(enumerate(self._phases))):
            xp.subtract(k, start, out=tmp)
            xp.divide(tmp, end - start, out=tmp)  # pct, as rate() computes it
            if kind == "cos":
                xp.multiply(tmp, math.pi, out=tmp)
                xp.cos(tmp, out=tmp)
                xp.add(tmp, 1.0, out=tmp)
                xp.multiply(tmp, (a - b) / 2.0, out=tmp)
                xp.add(tmp, b, out=tmp)
            else:
                xp.multiply(tmp, b - a, out=tmp)
                xp.add(tmp, a, out=tmp)
            if i == len(self._phases) - 1:
                xp.copyto(rate, tmp)
            else:  # the earlier phase wherever k has not passed its end
                xp.less_equal(k, end, out=chosen)
                xp.copyto(rate, tmp, where=chosen)
        xp.copyto(group.lr, rate, casting="same_kind")

    def step(self):
        """Nothing: ``fit`` calls this after every epoch, and the optimizer steps the schedule."""
        return None

    def state_dict(self) -> dict:
        """What a checkpoint keeps: ``{"base_lr": the peak rate}`` (the position is the
        optimizer's step count, saved with the optimizer)."""
        return {"base_lr": self.base_lr}

    def checked_state(self, state: dict) -> dict:
        """``state`` (as ``state_dict`` gives) checked: raises ValueError or TypeError saying
        what does not fit, before anything is changed."""
        owner = type(self).__name__
        if not isinstance(state, dict) or set(state) != {"base_lr"}:
            raise ValueError(f"{owner}: a per-step schedule's state is a record with 'base_lr' only, got {state!r}.")
        base_lr = _validate.real(owner, "base_lr", state["base_lr"], low=0, low_open=True)
        self._plan(base_lr)  # raises if the settings cannot go with it
        return {"base_lr": base_lr}

    def load_state_dict(self, state: dict) -> None:
        """Take ``state`` (checked first; nothing changes if it does not fit)."""
        state = self.checked_state(state)
        self.base_lr = state["base_lr"]
        self._phases = self._plan(self.base_lr)


class OneCycle(StepSchedule):
    """The one-cycle policy (Smith & Topin 2017) as PyTorch's ``OneCycleLR`` computes the
    rate: from ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then down to ``max_lr / div_factor / final_div_factor`` at step
    ``total_steps - 1``, along half a cosine (``anneal="cos"``) or a line (``"linear"``);
    ``three_phase=True`` comes back down to the starting rate first, as PyTorch's does.
    (PyTorch also cycles the momentum by default; here the rate alone is scheduled, as
    ``OneCycleLR(..., cycle_momentum=False)``.) After ``total_steps`` steps the rate stays
    at its last value (PyTorch raises instead).
    """

    def __init__(self, optimizer, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 anneal: str = "cos", div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False):
        owner = "OneCycle"
        max_lr = _validate.real(owner, "max_lr", max_lr, low=0, low_open=True)
        self.total_steps = _validate.integer(owner, "total_steps", total_steps, minimum=2)
        self.pct_start = _validate.real(owner, "pct_start", pct_start, low=0, high=1, low_open=True, high_open=True)
        if anneal not in ("cos", "linear"):
            raise ValueError(f"{owner}: anneal must be 'cos' or 'linear', got {anneal!r}.")
        self.anneal = anneal
        self.div_factor = _validate.real(owner, "div_factor", div_factor, low=0, low_open=True)
        self.final_div_factor = _validate.real(owner, "final_div_factor", final_div_factor, low=0, low_open=True)
        self.three_phase = bool(three_phase)
        super().__init__(optimizer, max_lr)
        self._last = self.total_steps - 1
        self._attach()

    def _plan(self, base_lr):
        initial = base_lr / self.div_factor
        low = initial / self.final_div_factor
        up = float(self.pct_start * self.total_steps) - 1  # PyTorch's phase ends
        if self.three_phase:
            ends = [(up, initial, base_lr), (2 * up, base_lr, initial), (self.total_steps - 1, initial, low)]
        else:
            ends = [(up, initial, base_lr), (self.total_steps - 1, base_lr, low)]
        phases, start = [], 0.0
        for end, a, b in ends:
            if not end > start:
                raise ValueError(
                    f"OneCycle: pct_start={self.pct_start!r} of total_steps={self.total_steps} leaves a phase "
                    f"without steps (from step {start:g} to {end:g}); use a pct_start that gives each phase "
                    f"at least one step, or more total_steps.")
            phases.append((start, float(end), a, b, self.anneal))
            start = float(end)
        return phases


class _Warmup(StepSchedule):
    """Linear warmup from 0 to the optimizer's rate over ``warmup_steps``, then a decay to
    ``min_lr`` at step ``total_steps`` (then held), as Hugging Face's
    ``get_cosine_schedule_with_warmup`` / ``get_linear_schedule_with_warmup`` (with min_lr=0):
    step k <= warmup_steps has rate lr * k / warmup_steps."""

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        owner = type(self).__name__
        self.warmup_steps = _validate.integer(owner, "warmup_steps", warmup_steps, minimum=0)
        self.total_steps = _validate.integer(owner, "total_steps", total_steps, minimum=1)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"{owner}: total_steps={self.total_steps} must be above warmup_steps="
                             f"{self.warmup_steps} (the decay needs at least one step).")
        self.min_lr = _validate.real(owner, "min_lr", min_lr, low=0)
        super().__init__(optimizer, optimizer.lr)
        self._last = self.total_steps
        self._attach()

    def _plan(self, base_lr):
        if not self.min_lr < base_lr:
            raise ValueError(f"{type(self).__name__}: min_lr={self.min_lr!r} must be below the peak rate "
                             f"{base_lr!r} (the optimizer's lr); build it with a smaller min_lr.")
        w, phases = float(self.warmup_steps), []
        if self.warmup_steps:  # steps 0..w: 0 up to the peak (step w is at the peak either way)
            phases.append((0.0, w, 0.0, base_lr, "linear"))
        phases.append((w, float(self.total_steps), base_lr, self.min_lr, self.decay))
        return phases


class WarmupCosine(_Warmup):
    """Linear warmup over ``warmup_steps``, then half a cosine from the optimizer's rate
    down to ``min_lr`` at step ``total_steps``:
    rate(k) = lr * k / warmup_steps for k <= warmup_steps, then
    min_lr + (lr - min_lr) / 2 * (1 + cos(pi * (k - warmup_steps) / (total_steps - warmup_steps)))."""

    decay = "cos"


class WarmupLinear(_Warmup):
    """Linear warmup over ``warmup_steps``, then a line from the optimizer's rate down to
    ``min_lr`` at step ``total_steps``."""

    decay = "linear"
