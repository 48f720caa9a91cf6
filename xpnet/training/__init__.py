"""The training layer: ``fit`` (``loop``), the step it records (``step``), where its batches
come from (``sources``, ``loader``), one process or many (``parallel``), what it does
besides the steps (``callbacks``, ``guard``), and ``evaluate``/``predict`` (``inference``)."""
from . import callbacks
from .callbacks import History
from .inference import evaluate, predict
from .loader import Loader, read_ahead
from .loop import fit

__all__ = ["fit", "evaluate", "predict", "History", "Loader", "read_ahead", "callbacks"]
