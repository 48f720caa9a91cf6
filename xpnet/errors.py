"""xpnet's exceptions. Each subclasses a built-in so existing ``except`` clauses keep working."""


class DeviceError(ValueError):
    """A device was asked for that cannot be had (unknown name, no CuPy, no GPU, no such index)."""


class ImplicitTransferError(TypeError):
    """Arrays from different devices met in one operation; only to_device/to_host cross."""


class ShapeError(ValueError):
    """An array reached a layer or loss with a shape it cannot take."""


class DTypeError(TypeError):
    """An array reached a layer or loss with a dtype it cannot take."""


class CheckpointError(ValueError):
    """A checkpoint file is not an xpnet file, is damaged, or does not fit the model."""


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or infinite loss)."""


class CaptureError(RuntimeError):
    """Work inside a recorded step that a recording cannot hold: a host read (``float(x)``,
    ``to_host``, printing, a branch on a device value), a copy from the host, or a random
    draw from a host-side generator. CUDA refuses these while capturing; sim refuses them
    the same way, so CI finds them without a GPU."""
