"""Optimizers (book ch. 6): SGD, Momentum, AdaGrad, RMSProp, Adam, and AdamW.

Updates are in place, through the backend (one routine per optimizer, so a backend can
fuse it). State lives on the parameters' device and follows them: after
``model.to(device)`` the next ``step`` moves the state too, explicitly and counted.

The first ``step`` lays the model's parameters, gradients and the optimizer's state out
in one flat buffer per device and dtype (the parameters become views into it), so each
update is one pass over the whole model. ``model.params()`` stays live throughout; an
array taken from it *before* the first step is the old copy and no longer changes.
"""
from __future__ import annotations

import math

from . import _validate
from .device import device_of
from .transfer import to_device


class Optimizer:
    """Base: tracks the model's parameters, their gradients and per-parameter state."""

    state_names: tuple = ()
    graph_safe = True  # every step launches the same work with the same scalars

    def __init__(self, model, lr: float, weight_decay: float = 0.0):
        self.model = model
        self.lr = self._check("lr", lr, low=0, low_open=True)
        self.weight_decay = self._check("weight_decay", weight_decay, low=0)
        self.t = 0
        self.state: dict = {}  # parameter name -> {state name: array}
        self._slots = None
        self._version = None

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

    def _prepare(self):
        """The update's flat buffers, (re)built after the model moved or changed.

        All parameters of one device and dtype are laid end to end in one flat array, and
        so are their gradients and each kind of state; the model's parameters and
        gradients become views into them. Then an update is a dozen array operations for
        the whole model, not a dozen per parameter: on the CPU the per-call overhead of a
        model with many small parameters (biases, BatchNorm's scales) was about half of
        Adam's time, and a GPU launches a dozen kernels instead of hundreds.
        """
        if self._slots is not None and self._version == self.model._version:
            return self._slots
        params, grads = self.model.params(), self.model.grads()
        groups = {}
        for name, p in params.items():
            groups.setdefault((device_of(p), p.dtype), []).append(name)
        views, slots = ({}, {}), []
        for (device, dtype), names in groups.items():
            xp, total = device.xp, sum(params[n].size for n in names)
            flat = {k: xp.empty(total, dtype=dtype) for k in ("p", "g") + self.state_names}
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
            state = {k: flat[k] for k in self.state_names}
            decayed = xp.empty(total, dtype=dtype) if self.weight_decay and not self.decoupled else None
            slots.append((device.backend, flat["p"], flat["g"], state, xp.empty(total, dtype=dtype), decayed))
        self.model._rebind(*views)  # bumps the model's version: another optimizer would notice
        self._slots, self._version = slots, self.model._version
        return slots

    decoupled = False  # weight decay as an L2 penalty in the gradient (AdamW: False)

    def step(self) -> None:
        """Update every parameter from its gradient."""
        slots = self._prepare()
        self.t += 1
        wd = 0.0 if self.decoupled else self.weight_decay
        for backend, p, g, state, scratch, decayed in slots:
            if wd:  # the L2 penalty wd/2 |p|^2 adds wd * p to the gradient
                backend.xp.multiply(p, wd, out=decayed)
                decayed += g
                g = decayed
            self._update(backend, p, g, state, scratch)

    def _update(self, backend, p, g, state, scratch):
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every gradient to zero (``backward`` overwrites them anyway, as in the book)."""
        for g in self.model.grads().values():
            g[...] = 0

    def state_dict(self) -> dict:
        """Step count and state arrays, for checkpoints."""
        return {"t": self.t, "state": {n: dict(s) for n, s in self.state.items()}}

    def load_state_dict(self, saved: dict) -> None:
        self.t = int(saved["t"])
        self.state = {n: dict(s) for n, s in saved["state"].items()}
        self._slots = None  # rebuilt (and moved to the parameters' device) on the next step


class SGD(Optimizer):
    """p -= lr * g"""

    def _update(self, backend, p, g, state, scratch):
        backend.sgd_update(p, g, self.lr, scratch)


class Momentum(Optimizer):
    """v = momentum * v - lr * g; p += v"""

    state_names = ("v",)

    def __init__(self, model, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.momentum = self._check("momentum", momentum, low=0, high=1, high_open=True)

    def _update(self, backend, p, g, state, scratch):
        backend.momentum_update(p, g, state["v"], self.lr, self.momentum, scratch)


class AdaGrad(Optimizer):
    """h += g^2; p -= lr * g / (sqrt(h) + eps)"""

    state_names = ("h",)

    def __init__(self, model, lr=0.01, eps=1e-7, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.eps = self._check("eps", eps, low=0, low_open=True)

    def _update(self, backend, p, g, state, scratch):
        backend.adagrad_update(p, g, state["h"], self.lr, self.eps, scratch)


class RMSProp(Optimizer):
    """h = decay * h + (1 - decay) g^2; p -= lr * g / (sqrt(h) + eps)"""

    state_names = ("h",)

    def __init__(self, model, lr=0.01, decay=0.99, eps=1e-7, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.decay = self._check("decay", decay, low=0, high=1, high_open=True)
        self.eps = self._check("eps", eps, low=0, low_open=True)

    def _update(self, backend, p, g, state, scratch):
        backend.rmsprop_update(p, g, state["h"], self.lr, self.decay, self.eps, scratch)


class Adam(Optimizer):
    """Adam (Kingma & Ba), in the book's form with the bias correction folded into lr."""

    state_names = ("m", "v")
    graph_safe = False  # the bias-corrected rate is computed on the host for each step

    def __init__(self, model, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)
        self.beta1 = self._check("beta1", beta1, low=0, high=1, high_open=True)
        self.beta2 = self._check("beta2", beta2, low=0, high=1, high_open=True)
        self.eps = self._check("eps", eps, low=0, low_open=True)

    def step(self):
        self._lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** (self.t + 1)) / (1.0 - self.beta1 ** (self.t + 1))
        super().step()

    def _update(self, backend, p, g, state, scratch):
        backend.adam_update(p, g, state["m"], state["v"], self._lr_t, self.beta1, self.beta2,
                            self.eps, scratch)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): each step shrinks the
    weights by lr * weight_decay apart from the gradient, p *= 1 - lr * wd, instead of
    adding wd * p to the gradient as ``Adam(weight_decay=...)`` does (the book's L2)."""

    decoupled = True

    def __init__(self, model, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.01):
        super().__init__(model, lr, beta1, beta2, eps, weight_decay)

    def _update(self, backend, p, g, state, scratch):
        if self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay
        super()._update(backend, p, g, state, scratch)
