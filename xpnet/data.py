"""``xn.data``: host batches for ``fit``, ``evaluate`` and ``predict`` (the code lives in
``xpnet/training/loader.py``; this module keeps the public names where they were)."""
from .training.loader import Loader, read_ahead

__all__ = ["Loader", "read_ahead"]
