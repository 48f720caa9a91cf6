"""``Layer``, the base of every layer (``Sequential`` is in sequential.py).

A layer keeps its parameters and their gradients as live arrays on its device, in dicts
named by the book's names (``W``, ``b``). ``backward`` overwrites the gradients, as in
the book. No layer writes into an array it was given; inside a ``Sequential``, built-in
layers write their results into their workspace, reused from call to call where it allows.
"""
from __future__ import annotations

import numpy

from .. import autodiff
from ..device import Device, current_device, device_of
from ..errors import DTypeError, ImplicitTransferError, ShapeError
from ..transfer import array_or_host, to_device
from .wrapping import (
    _AUTODIFF_BACKWARD,
    _checked_init,
    _on_current_device,
    _refuse_traced,
    _traced,
    _traced_param,
    _untraced,
    _unwrapped,
    on_device,
    reusable,
)


class Layer:
    """Base class: parameters, gradients, buffers, device moves and train/eval mode."""

    # Attributes set by each call (what backward needs), not settings, which a recorded step's
    # watch (training/step.py) leaves out; each class lists its own. These: autodiff's.
    _unrecorded = ("_graph", "_traced")

    # Whether forward may return its input or a view of it (and backward its dout): True
    # unless the layer says otherwise, since a layer of yours (a Lambda too) may. Built-in
    # layers that allocate their results say False. A Sequential reads it to know which
    # layer produces the array it hands back, which must not be a reused buffer.
    returns_input = True
    graph_safe = True      # a training step through it can be recorded once and replayed

    def __init_subclass__(cls, **kwargs):
        """Every layer's construction, forward and backward run under its device. A layer
        class that defines ``forward`` but no ``backward`` (nor inherits one) gets its
        backward from autodiff: forward is traced, backward is the traced graph's
        vector-Jacobian product."""
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward"):
            if name in cls.__dict__:
                setattr(cls, name, on_device(cls.__dict__[name]))
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked_init(_on_current_device(cls.__dict__["__init__"]))
        written = _untraced(cls.forward)
        if cls.backward in (Layer.backward, _AUTODIFF_BACKWARD):  # no backward of its own
            if written is None and cls.forward is not Layer.forward:
                cls.forward = on_device(_traced(_unwrapped(cls.forward)))
                cls.backward, cls.param = _AUTODIFF_BACKWARD, _traced_param
        elif written is not None:  # a hand-written backward below an autodiff-backed forward
            cls.forward, cls.param = on_device(written), Layer.param

    def __init__(self):
        self.device = current_device()
        self.training = True
        self._params: dict = {}
        self._grads: dict = {}
        self._buffers: dict = {}   # state saved with the model but not trained (BatchNorm's)
        self._work: dict = {}      # scratch arrays reused between calls
        # Set by the Sequential running this layer, for that call only (see Sequential):
        self._reuse = False        # results may go into buffers reused from call to call
        self._need_dx = True       # False where nobody reads dL/dx (the first layers)
        self._version = 0          # bumped on every move, so optimizers notice

    # -- running ----------------------------------------------------------------------
    def __call__(self, *inputs):
        self._check_device(inputs[0])
        if type(inputs[0]) is autodiff.Tensor:
            _refuse_traced(self)
        try:
            return self.forward(*inputs)
        except (ShapeError, DTypeError) as exc:
            raise type(exc)(f"{self.describe()}: {exc}") from None

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def _fuse(self, following):
        """A stage that runs this layer and the first few ``following`` ones in one pass, or
        None. Sequential asks each layer; a stage has ``size`` (the layers it stands for),
        ``applies(x)``, ``forward`` and ``backward``, and gives the layers' results."""
        return None

    def sublayers(self) -> tuple:
        """The layers this one is made of (a Sequential's), in order; () for a plain layer."""
        return ()

    def random_state(self) -> dict:
        """Device arrays that decide the layer's random draws (Dropout's counter). Restoring
        them replays the same draws: ``xn.testing.check_gradients`` does so before each
        evaluation. A layer with randomness of its own returns its arrays here."""
        return {}

    @property
    def device(self):
        return self._device

    @device.setter
    def device(self, device):
        self._device = device
        self.backend = device.backend  # the hot path reads this attribute every call

    def _check_device(self, x):
        try:
            where = device_of(x)
        except TypeError:
            raise TypeError(f"{self.describe()} takes an array, got {type(x).__name__}. "
                            f"Convert it with xn.asarray(x).") from None
        if where != self.device:
            raise ImplicitTransferError(
                f"{self.describe()} lives on {self.device} but got an array on {where}. "
                f"Move it explicitly: xn.to_device(x, '{self.device}').")

    def _as_dtype(self, x, dtype):
        """``x`` in the parameters' dtype: float, integer and bool inputs are cast on the
        device (Keras does the same), so float64 NumPy data or uint8 images just work."""
        if x.dtype == dtype:
            return x
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"got {x.dtype} input; the parameters are {dtype}, and only real "
                             f"numbers (float, integer, bool) are cast to them.")
        return x.astype(dtype)

    def _as_float(self, x):
        """``x`` as it is if floating point, else cast to float32 on the device (for layers
        without parameters to take a dtype from: activations, pooling, Dropout)."""
        if x.dtype.kind == "f":
            return x
        if x.dtype.kind not in "biu":
            raise DTypeError(f"got {x.dtype} input; only real numbers (float, integer, bool) are taken.")
        return x.astype("float32")

    def workspace(self, name, shape, dtype):
        """A buffer to write a result into (a routine's ``out=``), reused from call to call
        where the running Sequential allows it; else None, and the routine allocates."""
        return reusable(self._work, name, shape, dtype, self.backend.xp) if self._reuse else None

    def clear_workspace(self):
        """Forget the workspace, so the next call allocates it anew (``fit`` does this before
        recording a step, so that the recording owns every buffer it uses)."""
        self._work.clear()

    def _rebind(self, params: dict, grads: dict) -> None:
        """Make the given arrays (same shapes, holding the same values) the parameters and
        gradients by name; an optimizer does this to lay them out in one flat buffer."""
        renamed = {id(self._params[n]): a for n, a in params.items() if n in self._params}
        renamed.update({id(self._grads[n]): a for n, a in grads.items() if n in self._grads})
        self._params.update(params)
        self._grads.update(grads)
        self._repoint(renamed)
        self._version += 1

    def _repoint(self, renamed: dict) -> None:
        """Point an attribute that held a replaced array (``self.W = self.add_param("W", ...)``,
        the book's way; a private ``self._W``; or an entry of a list, tuple or dict attribute,
        ``self.ws = [...]``) at its replacement (``renamed``: id of old -> new), so the layer
        keeps computing with what is trained and moved."""
        for attribute, value in list(vars(self).items()):
            if id(value) in renamed:
                setattr(self, attribute, renamed[id(value)])
            elif isinstance(value, list):
                value[:] = [renamed.get(id(v), v) for v in value]
            elif isinstance(value, tuple) and any(id(v) in renamed for v in value):
                setattr(self, attribute, type(value)(*(renamed.get(id(v), v) for v in value))
                        if hasattr(value, "_fields") else tuple(renamed.get(id(v), v) for v in value))
            elif isinstance(value, dict) and attribute not in ("_params", "_grads", "_buffers"):
                for key, v in list(value.items()):
                    if id(v) in renamed:
                        value[key] = renamed[id(v)]

    # -- declaring parameters and buffers (the public way; the built-in layers use it) --
    def add_param(self, name: str, value):
        """Declare a trained parameter ``name`` with initial ``value`` (a host array, or
        anything ``numpy.asarray`` takes); it is copied to the layer's device, given a
        zero gradient of its shape, saved with the model, and updated by optimizers.
        Returns the device array (``self.param(name)`` gets it later)."""
        host = array_or_host(value, f"{self.describe()}.add_param({name!r})")
        if host.dtype.kind != "f":
            raise DTypeError(
                f"{self.describe()}.add_param({name!r}): the value is {host.dtype}; a trained parameter "
                f"must be floating point (a gradient step cannot change an integer). Give a float "
                f"value, e.g. numpy.asarray(value, dtype='float32'), or use add_buffer for state "
                f"that is not trained.")
        array = to_device(host, self.device)
        self._params[name] = array
        self._grads[name] = self.backend.xp.zeros_like(array)
        self._version += 1  # an optimizer built before (a lazy layer's first forward) lays it out too
        return array

    def add_buffer(self, name: str, value):
        """Declare state that is saved with the model but not trained (BatchNorm's running
        statistics): copied to the layer's device; returns the device array."""
        array = to_device(array_or_host(value, f"{self.describe()}.add_buffer({name!r})"), self.device)
        self._buffers[name] = array
        return array

    def param(self, name: str):
        """The live parameter array ``name`` (an optimizer may re-home it: ask each call)."""
        return self._params[name]

    def grad(self, name: str):
        """The live gradient array of parameter ``name``: ``backward`` writes into it in
        place (``self.grad("W")[...] = dW``, or a routine's ``out=``)."""
        return self._grads[name]

    def buffer(self, name: str):
        """The live buffer array ``name``."""
        return self._buffers[name]

    nonnegative_buffers: tuple = ()  # buffers that never hold a negative value (a variance)

    def _nonnegative_buffers(self) -> set:
        """Names, as ``buffers()`` gives them, of buffers ``save`` and ``load`` refuse to
        hold negative values."""
        return {n for n in self._buffers if n in self.nonnegative_buffers}

    # -- state ------------------------------------------------------------------------
    def params(self) -> dict:
        """Parameter name -> live array (writes to it change the layer)."""
        return dict(self._params)

    def grads(self) -> dict:
        """Parameter name -> live gradient array, written by ``backward``."""
        return dict(self._grads)

    def buffers(self) -> dict:
        """Name -> live array of non-trained state saved with the model."""
        return dict(self._buffers)

    def set_params(self, mapping) -> None:
        """Copy values into parameters (and buffers) by name; host arrays are moved.

        Every name and shape is checked before anything is written, so a mismatch
        leaves the layer as it was.
        """
        self._write(self._checked(mapping))

    def _checked(self, mapping):
        """(target, value) pairs for ``mapping``; raises before anything is written."""
        from ..io import _value_problem
        buffers, nonnegative = self.buffers(), self._nonnegative_buffers()
        targets = {**self.params(), **buffers}
        pairs = []
        for name, value in mapping.items():
            value = array_or_host(value, f"{self.describe()}: the value for '{name}'")
            if name not in targets:
                raise KeyError(f"{self.describe()} has no parameter '{name}'; it has {sorted(targets)}.")
            if tuple(value.shape) != tuple(targets[name].shape):
                raise ShapeError(f"{self.describe()}: parameter '{name}' has shape "
                                 f"{tuple(targets[name].shape)}, the value given has {tuple(value.shape)}.")
            checked = value
            if isinstance(value, numpy.ndarray) and value.dtype != targets[name].dtype:
                with numpy.errstate(over="ignore"):  # 1e300 as float32 is inf: checked as it will be
                    checked = value.astype(targets[name].dtype)
            problem = _value_problem(name, checked, "buffers" if name in buffers else "weights",
                                     name in nonnegative)
            if problem:  # what save and load refuse, refused here too, in their words
                raise ValueError(f"{self.describe()}.set_params: {problem}; nothing was written. Give "
                                 f"finite values (a model whose training diverged: load a checkpoint "
                                 f"from before, or re-initialise it).")
            pairs.append((targets[name], value))
        return pairs

    @on_device
    def _write(self, pairs):
        for target, value in pairs:
            target[...] = to_device(value, self.device).astype(target.dtype, copy=False)

    def to(self, device) -> "Layer":
        """Move parameters, gradients and buffers to ``device``; returns the layer."""
        device = Device(device)
        if device != self.device:
            old = [*self._params.values(), *self._grads.values(), *self._buffers.values()]
            self._params = to_device(self._params, device)
            self._grads = to_device(self._grads, device)
            self._buffers = to_device(self._buffers, device)
            new = [*self._params.values(), *self._grads.values(), *self._buffers.values()]
            self._repoint({id(a): b for a, b in zip(old, new)})
            self.clear_workspace()
            self.device = device
        self._version += 1
        return self

    def train(self, mode: bool = True) -> "Layer":
        self.training = mode
        return self

    def eval(self) -> "Layer":
        return self.train(False)

    def describe(self) -> str:
        """A short name for messages, such as ``Affine 784->100``."""
        return type(self).__name__

    def __repr__(self):
        return f"{self.describe()} on {self.device}"
