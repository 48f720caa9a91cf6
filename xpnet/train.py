"""``xpnet.train``: ``fit``, ``evaluate``, ``predict`` and ``History`` where they were (the
code lives in the package ``xpnet/training/``)."""
from .training import History, evaluate, fit, predict

__all__ = ["fit", "evaluate", "predict", "History"]
