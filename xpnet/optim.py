"""Optimizers (book ch. 6): SGD, Momentum, AdaGrad, RMSProp, Adam, and AdamW.

Updates are in place, through the backend (one routine per optimizer, so a backend can
fuse it). State lives on the parameters' device and follows them: after
``model.to(device)`` (or ``fit(..., device=)``, or a ``load``) the next ``step``, or the
next ``per_step_arrays()``, moves the state too, explicitly and counted.

An optimizer's state is of three kinds, each declared once on the class and then saved by
``xn.save``, restored by ``xn.load``, moved with the model and rolled back by ``fit`` on a
NaN without any code of the optimizer's own (docs/contributing.md):

- ``state_names``: per-parameter arrays, shaped like each parameter, starting at 0
  (Adam's ``m`` and ``v``);
- ``scalar_state``: per-optimizer running values, name -> starting value, kept as 0-d
  float64 arrays on the device and advanced by the step's own kernels (a Nadam's running
  product of momentum coefficients starts at 1.0);
- the step count ``t`` and the rate ``lr``, which every optimizer has.

``nonnegative`` names the state that can never be negative (sums of squares): a checkpoint
holding a negative value there is refused.

AdaGrad, RMSProp, Adam and AdamW take ``eps >= 0``, as PyTorch does; with ``eps=0`` a
parameter whose gradient has been exactly 0 at every step gets 0 / 0 = NaN, as in PyTorch.

Making an optimizer lays the model's parameters, gradients and the optimizer's state out
in one flat buffer per device and dtype (``groups()``: the parameters and gradients become
views into it), so each update is one pass over the whole model. This happens in one
place, ``groups()``: when the optimizer is made, and again on its next use after the model
moved or changed. ``model.params()`` stays live throughout; an array taken from it *before*
the optimizer was made is the old copy and no longer changes.
"""
from __future__ import annotations

import numpy

from . import _validate
from ._groups import Group, flat_buffers
from .device import device_of
from .transfer import to_device, to_host


class Optimizer:
    """Base: tracks the model's parameters, their gradients and per-parameter state.

    ``lr`` and ``t`` (the number of steps taken) read and write the values kept on the
    device; setting ``lr`` between steps (a schedule) changes what the next step, recorded
    or not, uses.

    A subclass declares its state (see the module's notes) and writes ``_update(group, g)``:
    ``group.p`` and ``g`` are the flat parameters and gradients of one device and dtype,
    ``group.state[name]`` each per-parameter state, ``group.scalars[name]`` each scalar
    state (0-d float64), ``group.t`` and ``group.lr`` 0-d device arrays, ``group.scratch`` a
    flat buffer and ``group.scalar(name, dtype)`` a named 0-d scratch array.
    """

    state_names: tuple = ()   # per-parameter state arrays, shaped like the parameter, start at 0
    scalar_state: dict = {}   # per-optimizer running values: name -> starting value (0-d float64)
    nonnegative: tuple = ()   # names among the two above that can never be negative
    _unrecorded = ("_lr", "_t")  # host copies of what the step reads on the device (a recorded step too)

    def __setattr__(self, name, value):
        """A NumPy number set on an optimizer (a setting of a subclass of yours too) is kept as
        the Python number: a numpy.float64 would make a float32 update compute in float64,
        where the cpu kernel and the NumPy routine round differently."""
        super().__setattr__(name, _validate.python_number(value))

    def __init__(self, model, lr: float, weight_decay: float = 0.0):
        self.model = model
        self._groups = None
        self.lr = self._check("lr", lr, low=0, low_open=True)  # later (a schedule) 0 is allowed
        self._weight_decay = self._check("weight_decay", weight_decay, low=0)
        self._t = 0
        self._scalars = {k: float(v) for k, v in self.scalar_state.items()}  # until the first step
        self.state: dict = {}  # parameter name -> {state name: array}
        self._version = None
        self.step_schedule = None  # a per-step schedule (xn.optim.schedules.OneCycle, ...) attaches itself here
        self.groups()  # built now, in one place: the model's parameters become views of them

    @property
    def lr(self) -> float:
        """The rate the next step uses; with a per-step schedule, the rate the last step used
        (read from the device)."""
        if self.step_schedule is not None and self._groups:
            return float(to_host(self._groups[0].lr))
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = self._check("lr", value, low=0)
        for group in self._groups or ():
            with group.backend.activate():
                group.lr[...] = self._lr  # a fill on the device, not a copy from the host

    @property
    def weight_decay(self) -> float:
        return self._weight_decay

    @weight_decay.setter
    def weight_decay(self, value):
        """Checked like the constructor's; turning it on or off lays the flat buffers out
        again at the next step (the L2 penalty has a buffer of its own)."""
        value = self._check("weight_decay", value, low=0)
        if bool(value) != bool(self._weight_decay):
            self._lay_out_again()
        self._weight_decay = value

    def _lay_out_again(self) -> None:
        """Drop the flat groups, to be built again at the next step, keeping the step count,
        rate and scalar state they hold (the per-parameter state follows by ``state``)."""
        self._t, self._lr, self._scalars = self.t, self.lr, self.scalars
        self._groups = None

    @property
    def t(self) -> int:
        """Steps taken (read from the device once the first step has run)."""
        if self._groups:
            return int(to_host(self._groups[0].t))
        return self._t

    @t.setter
    def t(self, value):
        self._t = int(value)
        for group in self._groups or ():
            with group.backend.activate():
                group.t[...] = self._t

    @property
    def scalars(self) -> dict:
        """The ``scalar_state`` values now, name -> float (read from the device once the
        first step has run)."""
        if self._groups:
            group = self._groups[0]
            return {k: float(to_host(v)) for k, v in group.scalars.items()}
        return dict(self._scalars)

    @scalars.setter
    def scalars(self, values):
        self._scalars = {k: float(values[k]) for k in self.scalar_state}
        for group in self._groups or ():
            with group.backend.activate():
                for k, v in group.scalars.items():
                    v[...] = self._scalars[k]

    def per_step_arrays(self) -> dict:
        """Every device array a step changes besides the model: the per-parameter state, the
        scalar state and the step counts, on the parameters' device now (state left on
        another device by ``model.to``, or loaded from a checkpoint, is moved there first).
        ``fit`` copies these to roll back a NaN step: an optimizer that declares its state
        (``state_names``, ``scalar_state``) is rolled back whole."""
        groups = self.groups()
        arrays = {f"state/{n}/{k}": v for n, s in self.state.items() for k, v in s.items()}
        for i, group in enumerate(groups):
            arrays[f"t/{i}"] = group.t
            arrays.update({f"scalar/{i}/{k}": v for k, v in group.scalars.items()})
        return arrays

    def _check(self, name, value, **bounds) -> float:
        return _validate.real(type(self).__name__, name, value, **bounds)

    def check_model(self, model, where: str) -> None:
        """Refuse to train or save ``model`` with an optimizer built for another model."""
        if self.model is not model:
            raise ValueError(
                f"{where}: the optimizer {type(self).__name__} was built for another model "
                f"({self.model.describe()}, parameters {sorted(self.model.params())}), not for "
                f"{model.describe()} (parameters {sorted(model.params())}); it would update the "
                f"other model's weights. Build it for this one: {type(self).__name__}(model, ...).")

    def groups(self) -> list:
        """The update's flat groups, one per device and dtype of the
        parameters: built when the optimizer is made, and rebuilt here on the first use
        after the model moved or changed (its state follows, a counted copy if it moves).

        All parameters of one device and dtype are laid end to end in one flat array, and
        so are their gradients and each kind of state; the model's parameters and
        gradients become views into them. Then an update is a dozen array operations for
        the whole model, not a dozen per parameter: the per-call overhead of many small
        parameters (biases, BatchNorm's scales) is paid once, and a GPU launches a dozen
        kernels instead of hundreds.
        """
        if self._groups is not None and self._version == self.model._version:
            return self._groups
        t_now, scalars_now = self.t, self.scalars  # read from the old device when the model has moved
        params, grads = self.model.params(), self.model.grads()
        by_key = {}
        for name, p in params.items():
            by_key.setdefault((device_of(p), p.dtype), []).append(name)
        views, groups = ({}, {}), []
        for (device, dtype), names in by_key.items():
            with device.backend.activate():
                groups.append(self._group(device, dtype, names, params, grads, views, t_now, scalars_now))
        self.model._rebind(*views)  # bumps the model's version: another optimizer would notice
        self._groups, self._version = groups, self.model._version
        return groups

    def _group(self, device, dtype, names, params, grads, views, t_now, scalars_now):
        """One device's and dtype's parameters laid out flat (see ``groups``)."""
        xp, total = device.xp, sum(params[n].size for n in names)
        decays = bool(self.weight_decay and not self.decoupled)
        flat = flat_buffers(xp, ("p", "g") + self.state_names + ("scratch",) + (("decayed",) if decays else ()),
                             total, dtype)
        scratch, decayed = flat.pop("scratch"), flat.pop("decayed", None)
        offset = 0
        for n in names:
            shape, end = params[n].shape, offset + params[n].size
            view = {k: a[offset:end].reshape(shape) for k, a in flat.items()}
            view["p"][...] = params[n]
            view["g"][...] = grads[n]
            old = self.state.get(n)
            for k in self.state_names:  # old state follows the parameters (a counted copy if it moves)
                view[k][...] = 0 if old is None else to_device(old[k], device)
            self.state[n] = {k: view[k] for k in self.state_names}
            views[0][n], views[1][n] = view["p"], view["g"]
            offset = end
        return Group(device, flat["p"], flat["g"], {k: flat[k] for k in self.state_names},
                      scratch, decayed, xp.full((), t_now, dtype=numpy.int64),
                      xp.full((), self._lr, dtype=dtype),
                      {k: xp.full((), v, dtype=numpy.float64) for k, v in scalars_now.items()})

    decoupled = False  # weight decay as an L2 penalty in the gradient (AdamW: True, applied apart)

    def step(self) -> None:
        """Update every parameter from its gradient. Every value that changes from step to
        step is read from, and advanced on, the device: the step records and replays. With a
        per-step schedule (``step_schedule``), the rate is set from the advanced step count
        on the device first."""
        groups = self.groups()
        wd = 0.0 if self.decoupled else self.weight_decay
        for group in groups:
            with group.backend.activate():
                group.t += 1
                if self.step_schedule is not None:
                    self.step_schedule.write_rate(group)
                g = group.g
                if wd:  # the L2 penalty wd/2 |p|^2 adds wd * p to the gradient
                    g = group.backend.decay_gradient(group.p, g, wd, out=group.decayed)
                self._update(group, g)


    def flat_grads(self) -> list:
        """The flat gradient of each group (see ``groups``), live: the model's gradients
        are views into them, so scaling one in place scales those gradients."""
        return [group.g for group in self.groups()]

    def _update(self, group, g):
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every gradient to zero (``backward`` overwrites them anyway, as in the book)."""
        for g in self.model.grads().values():
            with device_of(g).backend.activate():
                g[...] = 0

    def state_dict(self) -> dict:
        """Everything a checkpoint keeps: the step count ``t``, the rate ``lr``, the scalar
        state (name -> float) and the per-parameter state arrays (live ones: copy to keep)."""
        return {"t": self.t, "lr": self.lr, "scalars": self.scalars,
                "state": {n: dict(s) for n, s in self.state.items()}}

    def load_state_dict(self, saved: dict) -> None:
        """Take ``saved`` (as ``state_dict`` gives; ``lr`` and ``scalars`` may be absent, then
        they stay as they are). The arrays may be on any device: they move to the
        parameters' device on the next step."""
        self._lay_out_again()  # rebuilt (and moved to the parameters' device) on the next step
        self.state = {n: dict(s) for n, s in saved["state"].items()}
        self._t = int(saved["t"])
        if saved.get("lr") is not None:
            self.lr = saved["lr"]
        if saved.get("scalars") is not None:
            self.scalars = saved["scalars"]


class SGD(Optimizer):
    """p -= lr * g"""

    def _update(self, group, g):
        group.backend.sgd_update(group.p, g, group.lr, group.scratch)


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v

    ``nesterov=True``: Nesterov's accelerated gradient (Sutskever et al. 2013) in the form
    PyTorch's ``SGD(nesterov=True)`` computes, written in the book's sign convention:
    v = momentum * v - lr * g; p += momentum * v - lr * g. With a constant rate it takes
    the steps PyTorch takes (its buffer is -v / lr).
    """

    state_names = ("v",)

    momentum = _validate.Setting(_validate.between(0, 1, high_open=True))
    nesterov = _validate.Setting(_validate.flag)

    def __init__(self, model, lr=0.01, momentum=0.9, weight_decay=0.0, nesterov: bool = False):
        super().__init__(model, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, group, g):
        update = group.backend.nesterov_update if self.nesterov else group.backend.momentum_update
        update(group.p, g, group.state["v"], group.lr, self.momentum, group.scratch)


class AdaGrad(Optimizer):
    """h += g^2; p -= lr * g / (sqrt(h) + eps)"""

    state_names = ("h",)
    nonnegative = ("h",)

    eps = _validate.Setting(_validate.between(0))

    def __init__(self, model, lr=0.01, eps=1e-7, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.eps = eps

    def _update(self, group, g):
        group.backend.adagrad_update(group.p, g, group.state["h"], group.lr, self.eps, group.scratch)


class RMSProp(Optimizer):
    """h = decay * h + (1 - decay) g^2; p -= lr * g / (sqrt(h) + eps)"""

    state_names = ("h",)
    nonnegative = ("h",)

    decay = _validate.Setting(_validate.between(0, 1, high_open=True))
    eps = _validate.Setting(_validate.between(0))

    def __init__(self, model, lr=0.01, decay=0.99, eps=1e-7, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.decay = decay
        self.eps = eps

    def _update(self, group, g):
        group.backend.rmsprop_update(group.p, g, group.state["h"], group.lr, self.decay, self.eps, group.scratch)


class Adam(Optimizer):
    """Adam (Kingma & Ba), in the book's form with the bias correction folded into lr."""

    state_names = ("m", "v")
    nonnegative = ("v",)

    beta1 = _validate.Setting(_validate.between(0, 1, high_open=True))
    beta2 = _validate.Setting(_validate.between(0, 1, high_open=True))
    eps = _validate.Setting(_validate.between(0))

    def __init__(self, model, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.beta1, self.beta2 = beta1, beta2
        self.eps = eps

    def _update(self, group, g):
        # The bias-corrected rate from the device's step count, on the device (PyTorch's
        # capturable Adam does the same), so a recorded step corrects each replay anew.
        work = (group.scalar("corr1", numpy.float64), group.scalar("corr2", numpy.float64))
        lr_t = group.backend.adam_rate(group.lr, group.t, self.beta1, self.beta2,
                                       out=group.scalar("lr_t", group.p.dtype), work=work)
        group.backend.adam_update(group.p, g, group.state["m"], group.state["v"], lr_t, self.beta1,
                                  self.beta2, self.eps, group.scratch)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): each step shrinks the
    weights by lr * weight_decay apart from the gradient, p *= 1 - lr * wd, instead of
    adding wd * p to the gradient as ``Adam(weight_decay=...)`` does (the book's L2)."""

    decoupled = True

    def __init__(self, model, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.01):
        super().__init__(model, lr, beta1, beta2, eps, weight_decay)

    def _update(self, group, g):
        if self.weight_decay:  # p *= 1 - lr * wd, with lr read on the device
            shrink = group.xp.multiply(group.lr, -self.weight_decay, out=group.scalar("shrink", group.p.dtype))
            shrink += 1
            group.p *= shrink
        super()._update(group, g)


from . import schedules  # noqa: E402, F401 (xn.optim.schedules.StepDecay, as the design names it)
