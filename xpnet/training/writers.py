"""The callbacks that write files: ``ModelCheckpoint`` (``xn.save`` after an epoch, or after
one that improved a figure) and ``CSVLogger`` (a row an epoch). In a distributed run
``ModelCheckpoint`` calls ``xn.save`` on every rank, which writes on rank 0 only, and
``CSVLogger`` writes on rank 0 only."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from .. import _validate
from .callbacks import Callback, Validation, _Monitor


class ModelCheckpoint(Callback):
    """Save the model, with its optimizer's state (and the schedule's, if fit has one), with
    ``xn.save`` after every epoch, or (``save_best_only``) only after an epoch that improved
    ``monitor`` (as ``EarlyStopping`` judges it). The file is replaced atomically; in a
    distributed run every rank calls ``xn.save`` and rank 0 writes. ``path`` may hold
    fields of the epoch's logs, as ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``.
    ``saved`` lists the paths written, ``best`` the best value seen.

    ``initial_value_threshold`` (Keras's name): the value an epoch must improve on to be
    saved, at first. A resumed fit (``initial_epoch``) whose best file is already there
    needs it (its value is not in the file), or it would replace that file with the first
    epoch it trains, better or not: such a fit is refused before its first step."""

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto",
                 initial_value_threshold=None):
        self.path, self.save_best_only = path, bool(save_best_only)
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self.threshold = None if initial_value_threshold is None else _validate.real(
            "ModelCheckpoint", "initial_value_threshold", initial_value_threshold)
        self.saved = []

    @property
    def best(self):
        return self._monitor.best

    def on_train_begin(self, run):
        """Refuse, before the first step, a path that could not be written after an epoch: a
        field the epoch's figures will not have, or a folder that does not exist."""
        if self.save_best_only:
            self._monitor.check(run)
        self._monitor.best, self.saved = self.threshold, []
        path = str(self.path)
        if not _fields(path):
            self._check_resumed(run, path.format())  # the file's name ({{ and }} written as braces)
        validation = any(isinstance(cb, Validation) for cb in run.callbacks)
        classify = getattr(run.loss_fn, "classification", False)
        for field in _fields(path):
            if field.startswith("val_") and not validation:
                raise ValueError(f"ModelCheckpoint: the path {path!r} holds {{{field}}}, but this fit has no "
                                 f"validation=, so the epoch's figures have no {field!r}. Pass "
                                 f"validation=(x_val, t_val) to fit, or use fields such as {{epoch}} or {{loss}}.")
            if field in ("accuracy", "val_accuracy") and not classify:
                raise ValueError(f"ModelCheckpoint: the path {path!r} holds {{{field}}}, but the loss "
                                 f"{type(run.loss_fn).__name__} is not a classification loss, so {field!r} is "
                                 f"None. Use {{epoch}} or {{loss}} (or {{val_loss}} with validation=).")
        if "{" not in str(Path(path).parent):
            _check_folder(path)

    def _check_resumed(self, run, path) -> None:
        """Refuse, before the first step, to replace a fixed path that cannot be written, or
        a resumed fit's best file with an epoch judged against no best (see the class)."""
        if not Path(path).exists():
            return
        if not os.access(path, os.W_OK):
            raise PermissionError(f"ModelCheckpoint: {path!r} is read-only, so no epoch could be saved there; make "
                                  f"it writable (chmod u+w), or give another path.")
        if self.save_best_only and run.initial_epoch and self.threshold is None:
            raise ValueError(f"ModelCheckpoint: this fit resumes after epoch {run.initial_epoch} and {path!r} holds "
                             f"the best model so far, whose {self._monitor.monitor} the file does not keep; pass "
                             f"initial_value_threshold=<that value> so that only a better epoch replaces it, or "
                             f"give another path.")

    def on_epoch_end(self, run, logs):
        from ..io import save
        if self.save_best_only and not self._monitor.improved(self._monitor.value(logs)):
            return
        path = str(self.path)
        if "{" in path:
            try:
                path = path.format(**logs)
            except KeyError as exc:
                known = sorted(k for k, v in logs.items() if v is not None)
                raise ValueError(f"ModelCheckpoint: the path {path!r} holds {{{exc.args[0]}}}, which is not "
                                 f"among epoch {logs.get('epoch')}'s figures {known}. Use one of those.") from None
            _check_folder(path)
        save(run.model, path, optimizer=run.optimizer, schedule=run.schedule)
        self.saved.append(Path(path))


def _fields(template: str) -> list:
    """The names of the fields of a ``str.format`` template (``"c-{val_loss:.3f}"``: val_loss)."""
    import string
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"ModelCheckpoint: the path {template!r} is not a valid template ({exc}); write "
                         f"fields as {{epoch:03d}}, and braces meant literally as {{{{ and }}}}.") from None
    names = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".")[0].split("[")[0]
        if not name or name.isdigit():
            raise ValueError(f"ModelCheckpoint: the path {template!r} holds a field without a name "
                             f"({{{field}}}); name a figure of the epoch's logs, as {{epoch}} or {{val_loss}}.")
        names.append(name)
    return names


def _check_folder(path: str) -> None:
    folder = Path(path).parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"ModelCheckpoint: the folder {str(folder)!r} of {path!r} {what}; create it "
                                f"first (os.makedirs({str(folder)!r}, exist_ok=True)), or give a path in a "
                                f"folder that exists.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"ModelCheckpoint: no permission to create files in the folder {str(folder)!r} of "
                              f"{path!r}; give a path in a folder you can write.")


class CSVLogger(Callback):
    """One row per epoch in the CSV file ``path``: the epoch and its figures (``loss``,
    ``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``, and any a callback added
    before this one), under a header. ``append=True`` adds to an existing file (the header
    only if it is empty); ``append=None`` (the default) does where the fit resumes
    (``initial_epoch`` > 0), and starts the file anew otherwise. Written on rank 0 only, a
    row at a time, flushed."""

    def __init__(self, path, separator: str = ",", append=None):
        self.path, self.separator = Path(path), separator
        self.append = None if append is None else bool(append)
        self.columns = None

    def on_train_begin(self, run):
        self.columns = None
        append = self.append if self.append is not None else run.initial_epoch > 0
        if run.parallel.chief and not append:
            self.path.write_text("")

    def on_epoch_end(self, run, logs):
        if not run.parallel.chief:
            return
        if self.columns is None:
            self.columns = ["epoch"] + [k for k in logs if k != "epoch"]
            header = not self.path.exists() or self.path.stat().st_size == 0
        else:
            header = False
        with open(self.path, "a", newline="") as file:
            writer = csv.writer(file, delimiter=self.separator)
            if header:
                writer.writerow(self.columns)
            writer.writerow(["" if logs.get(k) is None else logs[k] for k in self.columns])


__all__ = ["ModelCheckpoint", "CSVLogger"]
