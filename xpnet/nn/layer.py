"""``Layer``, the base of every layer, and ``Sequential``.

A layer keeps its parameters and their gradients as live arrays on its device, in dicts
named by the book's names (``W``, ``b``). ``backward`` overwrites the gradients, as in
the book. Inside a ``Sequential``, layers reuse their output and gradient buffers from
step to step and may work in place on what flows between them; a layer used alone
allocates fresh arrays, so nothing the caller holds is ever overwritten.
"""
from __future__ import annotations

import functools

from .. import autodiff
from ..device import Device, current_device, device_of
from ..errors import DTypeError, ImplicitTransferError, ShapeError
from ..transfer import array_or_host, to_device


def _under(backend_of, method):
    """``method`` run under the device ``backend_of(self)`` names (its ``activate()``), as
    CuPy needs: arrays are allocated, and kernels launched, on the current device. A
    no-op where the device has no notion of a current one (the CPU)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        backend = backend_of(self)
        if not backend.scoped:
            return method(self, *args, **kwargs)
        with backend.activate():
            return method(self, *args, **kwargs)
    return run


def on_device(method):
    """``method`` run under its object's device (``self.backend``)."""
    return _under(lambda self: self.backend, method)


def _on_current_device(init):
    """``__init__`` under the device the layer is built on (the current one)."""
    return _under(lambda self: current_device().backend, init)


def _unwrapped(fn):
    return getattr(fn, "__wrapped__", fn)


def _untraced(forward):
    """The user's forward behind a traced one, or None if ``forward`` is not traced."""
    return getattr(_unwrapped(forward), "_untraced", None)


def _traced(forward):
    """forward(x), run on traced values (the input and every parameter), so that
    backward can be the graph's vector-Jacobian product."""
    def run(self, x):
        self._traced = {name: autodiff.Tensor(p) for name, p in self._params.items()}
        x_in = autodiff.Tensor(x)
        try:
            y = forward(self, x_in)
        finally:
            traced, self._traced = self._traced, None
        self._graph = (x_in, traced, y)
        return y.data if type(y) is autodiff.Tensor else y
    run._untraced = forward
    run.__name__, run.__doc__ = forward.__name__, forward.__doc__
    return run


def _traced_param(self, name):
    traced = getattr(self, "_traced", None)
    return traced[name] if traced else self._params[name]


def _autodiff_backward(self, dout):
    """dL/dx, and every parameter's gradient written in place, from the traced forward."""
    x_in, traced, y = self._graph
    names = list(traced)
    grads = autodiff.vjp_of_traced(y, [x_in] + [traced[n] for n in names], dout)
    for name, g in zip(names, grads[1:]):
        self._grads[name][...] = g
    return grads[0]


_AUTODIFF_BACKWARD = on_device(_autodiff_backward)


def reusable(cache: dict, name, shape, dtype, xp):
    """``cache[name]`` if it has this shape and dtype, else a new empty array kept there."""
    buf = cache.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = cache[name] = xp.empty(shape, dtype=dtype)
    return buf


class Layer:
    """Base class: parameters, gradients, buffers, device moves and train/eval mode."""

    returns_input = False  # True for layers whose output may be their input or a view of it
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
            cls.__init__ = _on_current_device(cls.__dict__["__init__"])
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
        self._reuse = False        # Sequential: keep output/gradient buffers between calls
        self._inplace = False      # Sequential: may overwrite the input it is given
        self._need_dx = True       # Sequential: False for the first layers (nobody reads dx)
        self._version = 0          # bumped on every move, so optimizers notice

    # -- running ----------------------------------------------------------------------
    def __call__(self, *inputs):
        self._check_device(inputs[0])
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

    def _buffer(self, name, shape, dtype):
        """A reusable buffer when inside a Sequential, else None (the routine allocates)."""
        return reusable(self._work, name, shape, dtype, self.backend.xp) if self._reuse else None

    def _drop_work(self):
        """Forget the reusable buffers, so the next call allocates them anew (``fit`` does
        this before recording a step, so that the recording owns every buffer it uses)."""
        self._work.clear()

    def _rebind(self, params: dict, grads: dict) -> None:
        """Make the given arrays (same shapes, holding the same values) the parameters and
        gradients by name; an optimizer does this to lay them out in one flat buffer."""
        self._params.update(params)
        self._grads.update(grads)
        self._version += 1

    # -- declaring parameters and buffers (the public way; the built-in layers use it) --
    def add_param(self, name: str, value):
        """Declare a trained parameter ``name`` with initial ``value`` (a host array, or
        anything ``numpy.asarray`` takes); it is copied to the layer's device, given a
        zero gradient of its shape, saved with the model, and updated by optimizers.
        Returns the device array (``self.param(name)`` gets it later)."""
        array = to_device(array_or_host(value, f"{self.describe()}.add_param({name!r})"), self.device)
        self._params[name] = array
        self._grads[name] = self.backend.xp.zeros_like(array)
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

    def _checked(self, mapping, owner=None, prefix=""):
        """(target, value) pairs for ``mapping``; raises before anything is written."""
        targets = {**self.params(), **self.buffers()}
        owner = owner or self
        pairs = []
        for name, value in mapping.items():
            value = array_or_host(value, f"{owner.describe()}: the value for '{prefix}{name}'")
            if name not in targets:
                raise KeyError(f"{owner.describe()} has no parameter '{prefix}{name}'; "
                               f"it has {sorted({**owner.params(), **owner.buffers()})}.")
            if tuple(value.shape) != tuple(targets[name].shape):
                raise ShapeError(f"{owner.describe()}: parameter '{prefix}{name}' has shape "
                                 f"{tuple(targets[name].shape)}, the value given has {tuple(value.shape)}.")
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
            self._params = to_device(self._params, device)
            self._grads = to_device(self._grads, device)
            self._buffers = to_device(self._buffers, device)
            self._work.clear()
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


class _Layers(tuple):
    """Sequential's layers: a tuple, since the buffer plan and the optimizers' slots are
    built for one structure. Changing it says what to do instead."""

    def _fixed(self, *args, **kwargs):
        raise TypeError("a Sequential's layers are fixed once it is built (its buffer reuse and "
                        "its optimizer depend on them). Build a new one instead, for example "
                        "Sequential(*model.layers[:2], Dropout(0.5), *model.layers[2:]), and a new "
                        "optimizer for it.")

    append = extend = insert = pop = remove = clear = sort = reverse = __setitem__ = __delitem__ = _fixed
    __iadd__ = __imul__ = _fixed


def _leaf_layers(layers):
    for layer in layers:
        if isinstance(layer, Sequential):
            yield from _leaf_layers(layer.layers)
        yield layer


class Sequential(Layer):
    """Layers applied in order; parameters are named ``"<index>.<name>"`` (``"0.W"``).

    ``backward`` returns the gradient with respect to the input only when built with
    ``input_grad=True``: otherwise the first layers skip computing what nobody reads.
    ``layers`` is fixed once built; a layer may appear only once (a layer keeps the
    input of its last call for backward, so a second use would overwrite the first's).
    """

    def __init__(self, *layers, input_grad: bool = False):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {i} is {type(layer).__name__}, not a layer.")
        seen = set()
        for layer in _leaf_layers(layers):
            if id(layer) in seen:
                raise ValueError(
                    f"Sequential: the same {layer.describe()} layer object is used twice. A layer "
                    f"keeps what its backward needs from its last call, so a second use would give "
                    f"the first wrong gradients. Use two layers; to share weights, write a layer "
                    f"that applies one weight twice, or use xn.grad.")
            seen.add(id(layer))
        self.layers = _Layers(layers)
        self.input_grad = input_grad
        if self.layers:
            self.device = self.layers[0].device
            for i, layer in enumerate(self.layers):
                if layer.device != self.device:
                    raise ImplicitTransferError(
                        f"Sequential layer {i} ({layer.describe()}) is on {layer.device}, layer 0 "
                        f"on {self.device}. Build them under one device or call model.to(device).")
        self._configure()

    def _configure(self):
        # The layer that produces the returned array must allocate it fresh; layers after it
        # (Flatten, Dropout in eval mode) may hand back their input or a view of it.
        last = next((i for i in range(len(self.layers) - 1, -1, -1) if not self.layers[i].returns_input), 0)
        first_with_params = next((i for i, l in enumerate(self.layers) if l._params), last)
        for i, layer in enumerate(self.layers):
            layer._reuse = i < last            # the output handed back to the caller is fresh
            layer._inplace = 0 < i < last      # never overwrite the caller's input or output
            layer._need_dx = self.input_grad or i > first_with_params
        self._fusions = {}  # first layer's index -> a stage running several layers in one pass
        for i, layer in enumerate(self.layers):
            stage = layer._fuse(self.layers[i + 1:])
            if stage is not None:
                self._fusions[i] = stage
        self._ran = None  # what the last forward ran, for backward: layers and stages

    def __call__(self, x):
        self._check_device(x)
        return self.forward(x)  # forward names the failing layer itself

    def __len__(self):
        return len(self.layers)

    @property
    def graph_safe(self):
        return all(layer.graph_safe for layer in self.layers)

    def _drop_work(self):
        for layer in self.layers:
            layer._drop_work()

    def random_state(self):
        return self._named(lambda layer: layer.random_state())

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x):
        i, ran, self._ran = 0, [], None  # a forward that fails leaves nothing to go back through
        try:
            while i < len(self.layers):
                stage, size = self._fusions.get(i), 1
                if stage is not None and stage.applies(x):
                    size = stage.size
                else:
                    stage = self.layers[i]
                x = stage.forward(x)
                ran.append(stage)
                i += size
        except (ShapeError, DTypeError) as exc:
            raise type(exc)(f"Sequential layer {i} ({self.layers[i].describe()}): {exc}") from None
        self._ran = ran
        return x

    def backward(self, dout):
        if self._ran is None:
            raise RuntimeError(f"{self.describe()}: backward needs a forward pass first (the last one "
                               f"failed, or none ran). Call model(x), then model.backward(dout).")
        for stage in reversed(self._ran):
            dout = stage.backward(dout)
            if dout is None:
                break
        return dout

    def _named(self, getter):
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in getter(layer).items()}

    def params(self):
        return self._named(Layer.params)

    def grads(self):
        return self._named(Layer.grads)

    def buffers(self):
        return self._named(Layer.buffers)

    def _rebind(self, params, grads):
        for i, layer in enumerate(self.layers):
            prefix = f"{i}."
            layer._rebind({k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)},
                          {k[len(prefix):]: v for k, v in grads.items() if k.startswith(prefix)})
        self._version += 1

    def set_params(self, mapping):
        per_layer = [dict() for _ in self.layers]
        for name, value in mapping.items():
            index, _, key = name.partition(".")
            if not index.isdigit() or int(index) >= len(self.layers):
                raise KeyError(f"Sequential has no parameter {name!r}; it has {sorted(self.params())}.")
            per_layer[int(index)][key] = value
        pairs = [pair for i, (layer, values) in enumerate(zip(self.layers, per_layer))
                 for pair in layer._checked(values, owner=self, prefix=f"{i}.")]  # check all first
        self._write(pairs)

    def to(self, device):
        device = Device(device)
        for layer in self.layers:
            layer.to(device)
        self.device = device
        self._version += 1
        return self

    def train(self, mode=True):
        for layer in self.layers:
            layer.train(mode)
        self.training = mode
        return self

    def describe(self):
        return "Sequential(" + ", ".join(l.describe() for l in self.layers) + ")"
