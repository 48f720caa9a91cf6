"""Optimizers (book ch. 6): SGD, Momentum, AdaGrad, RMSProp, Adam.

Updates are in place, through the backend (one routine per optimizer, so a backend can
fuse it). State lives on the parameters' device and follows them: after
``model.to(device)`` the next ``step`` moves the state too, explicitly and counted.
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
        if self._slots is not None and self._version == self.model._version:
            return self._slots
        params, grads = self.model.params(), self.model.grads()
        slots = []
        scratch = self._scratch(params.values())
        decay = self._scratch(params.values()) if self.weight_decay else None
        for name, p in params.items():
            device = device_of(p)
            state = self.state.get(name)
            if state is None:
                state = {k: device.xp.zeros_like(p) for k in self.state_names}
            else:
                state = to_device(state, device)  # follow the parameters
            self.state[name] = state
            key = (device, p.dtype)
            work = scratch[key][:p.size].reshape(p.shape)
            decayed = None if decay is None else decay[key][:p.size].reshape(p.shape)
            slots.append((device.backend, p, grads[name], state, work, decayed))
        self._slots, self._version = slots, self.model._version
        return slots

    @staticmethod
    def _scratch(params):
        """One flat scratch buffer per device and dtype, as long as the largest parameter.

        Updates run one parameter at a time, so they can share it; one buffer instead of
        a copy of the model keeps more of the step in cache (a few % on the CPU). With
        weight decay, a second such buffer holds the decayed gradient.
        """
        sizes = {}
        for p in params:
            key = (device_of(p), p.dtype)
            sizes[key] = max(sizes.get(key, 0), p.size)
        return {key: key[0].xp.empty(size, dtype=key[1]) for key, size in sizes.items()}

    def step(self) -> None:
        """Update every parameter from its gradient."""
        slots = self._prepare()
        self.t += 1
        wd = self.weight_decay
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
