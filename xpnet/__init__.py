"""xpnet: the book's neural networks on NumPy (CPU) or CuPy (CUDA), chosen at run time,
with every host<->device copy explicit.

``xn.xp`` is the current device's array module, looked up each time it is read.

``_launch`` comes first: under ``mpiexec`` it gives each rank's BLAS its share of the cores,
which has to happen before NumPy loads its BLAS (see xpnet/_launch.py).
"""
from . import _launch, augment, autodiff, callbacks, data, datasets, functional, nn, optim, testing  # noqa: F401 (_launch)
from ._version import __version__
from .autodiff import grad, value_and_grad
from .backends import cuda_unavailable_reason
from .backends.base import LaunchStats, TransferStats, get_matmul_precision, set_matmul_precision
from .device import Device, available_devices, current_device, device_of, get_array_module, use_device
from .errors import (
    CaptureError,
    CheckpointError,
    DeviceError,
    DTypeError,
    ImplicitTransferError,
    ShapeError,
    TrainingError,
)
from .io import load, save
from .nn.init import seed
from .onnx import export_onnx
from .training import History, evaluate, fit, predict
from .transfer import asarray, launch_stats, reset_transfer_stats, to_device, to_host, transfer_stats

__all__ = [
    "Device", "available_devices", "current_device", "device_of", "get_array_module", "use_device",
    "to_device", "to_host", "asarray", "transfer_stats", "reset_transfer_stats", "TransferStats",
    "DeviceError", "ImplicitTransferError", "ShapeError", "DTypeError", "CheckpointError",
    "TrainingError", "CaptureError", "cuda_unavailable_reason", "launch_stats", "LaunchStats",
    "set_matmul_precision", "get_matmul_precision",
    "__version__", "nn", "optim", "augment", "autodiff", "functional", "testing", "data", "callbacks",
    "datasets", "fit", "evaluate", "predict", "History", "save", "load", "grad", "value_and_grad", "seed",
    "export_onnx",
]


def __getattr__(name):
    if name == "xp":
        return current_device().xp
    raise AttributeError(f"module 'xpnet' has no attribute {name!r}")
