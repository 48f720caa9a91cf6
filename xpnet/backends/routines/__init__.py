"""The portable routines by topic, each family a mixin of ``Backend`` written once on
``self.xp``: a backend subclass overrides a routine only where it has something faster."""
from .activations import ActivationRoutines
from .conv import ConvRoutines
from .dense import DenseRoutines
from .geometry import Geometry
from .losses import LossRoutines
from .norm import NormRoutines
from .pool import PoolRoutines
from .random import RandomRoutines
from .updates import UpdateRoutines

__all__ = ["ActivationRoutines", "ConvRoutines", "DenseRoutines", "Geometry", "LossRoutines", "NormRoutines",
           "PoolRoutines", "RandomRoutines", "UpdateRoutines"]
