"""``xn.callbacks``: hooks into ``fit`` (``fit(..., callbacks=[...])``); see
``xpnet/training/callbacks.py`` for when each hook runs and what it is given."""
from .training.callbacks import Callback, EarlyStopping
from .training.writers import CSVLogger, ModelCheckpoint

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "CSVLogger"]
