"""Checkpoints: ``save(model, path)`` and ``load(model, path)``, as ``.npz``, never pickle.

The file holds each parameter and buffer by name, a JSON record of names, shapes,
dtypes, the device it was saved from and the xpnet version, and optionally the
optimizer's state. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the target, so a crash leaves either the old file or the new
one, never half of one. Loading checks everything before writing anything: a file that
does not fit leaves the model as it was.
"""
from __future__ import annotations

import glob
import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy

from .errors import CheckpointError
from .transfer import to_host

FORMAT = "xpnet-checkpoint"
VERSION = 1
_META = "__xpnet__"


def _spec(arrays):
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}


def save(model, path, optimizer=None) -> Path:
    """Write ``model`` (and ``optimizer``'s state, if given) to ``path`` atomically.

    The model stays where it is; its arrays are copied to the host for writing. Saving
    over a file keeps its permissions (a new file gets the umask's); a symlink is written
    through (its target is replaced, the link kept). Temporary files that a killed save of
    the same checkpoint left behind are removed. In a distributed run (``mpiexec``) only
    rank 0 writes: the ranks hold the same model.
    """
    from . import __version__, distributed
    if distributed.launched() and distributed.rank() != 0:
        return Path(path)
    if optimizer is not None:
        optimizer.check_model(model, "save")
    target = Path(os.path.realpath(path))
    params = to_host(model.params())
    buffers = to_host(model.buffers())
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"buffer/{k}": v for k, v in buffers.items()})
    meta = {"format": FORMAT, "version": VERSION, "xpnet": __version__,
            "device": str(model.device), "model": model.describe(),
            "params": _spec(params), "buffers": _spec(buffers), "optimizer": None}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"type": type(optimizer).__name__, "t": state["t"],
                             "lr": optimizer.lr}
        for name, slots in to_host(state["state"]).items():
            for key, value in slots.items():
                arrays[f"optim/{name}/{key}"] = value
    arrays[_META] = numpy.array(json.dumps(meta))
    _remove_stale_temporaries(target)
    mode = _mode_for(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(path)


def _mode_for(target: Path) -> int:
    """The existing file's permission bits, or what the umask gives a new file."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_stale_temporaries(target: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` files beside ``target`` whose writer is gone."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = tmp.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # a save of this checkpoint is under way in another process
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now: we are about to
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path):
    try:
        with numpy.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable xpnet checkpoint ({type(exc).__name__}: "
                              f"{exc}); it may be truncated, damaged or not an .npz file.") from None
    if _META not in data:
        raise CheckpointError(f"{path} is an .npz file but not an xpnet checkpoint "
                              f"(it has no {_META} record; its arrays: {sorted(data)[:8]}).")
    try:
        meta = json.loads(str(data.pop(_META)))
    except ValueError as exc:
        raise CheckpointError(f"{path}: its {_META} record is damaged ({exc}).") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its {_META} record is a JSON {type(meta).__name__}, "
                              f"not an object; the file is damaged or was not written by xpnet.")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                              f"this xpnet reads {FORMAT!r} version {VERSION}.")
    return data, meta


def _differences(prefix, expected, data, what="parameters"):
    """What keeps ``data``'s arrays under ``prefix/`` from fitting ``expected`` exactly."""
    problems = []
    for name, array in expected.items():
        key = f"{prefix}/{name}"
        if key not in data:
            problems.append(f"missing {name!r}")
        elif data[key].shape != tuple(array.shape):
            problems.append(f"{name!r} has shape {data[key].shape} in the file, {tuple(array.shape)} in the model")
        elif data[key].dtype != array.dtype:
            problems.append(f"{name!r} is {data[key].dtype} in the file, {array.dtype} in the model")
        elif data[key].dtype.kind in "fc" and not numpy.isfinite(data[key]).all():
            problems.append(f"{name!r} holds NaN or infinite values")
    extra = sorted(k[len(prefix) + 1:] for k in data if k.startswith(prefix + "/")
                   and k[len(prefix) + 1:] not in expected)
    if extra:
        problems.append(f"the file has {what} the model lacks: {extra}")
    return problems


def _optimizer_state(path, meta, data, model, optimizer):
    """The optimizer's saved state, checked whole against ``optimizer`` and ``model``."""
    info = meta.get("optimizer")
    if info is None:
        raise CheckpointError(f"{path} holds no optimizer state; save it with "
                              f"xn.save(model, path, optimizer=opt), or load without optimizer=.")
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: the 'optimizer' field is a {type(info).__name__}, not a record "
                              f"of type and step; the file is damaged.")
    kind, t = info.get("type"), info.get("t")
    if kind != type(optimizer).__name__:
        raise CheckpointError(f"{path} holds {kind} state, not {type(optimizer).__name__}.")
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise CheckpointError(f"{path}: the optimizer's step count 't' is {t!r}; expected a whole "
                              f"number >= 0. The file is damaged.")
    params = model.params()
    expected = {f"{name}/{slot}": p for name, p in params.items() for slot in optimizer.state_names}
    saved = {k: v for k, v in data.items() if k.startswith("optim/")}
    if t == 0 and not saved:
        return {"t": 0, "state": {}}  # saved before its first step: nothing to restore
    problems = _differences("optim", expected, saved, what="optimizer state")
    if problems:
        raise CheckpointError(f"{path}: the {kind} state does not fit {model.describe()}: "
                              + "; ".join(problems) + ". Load with optimizer=None to skip it.")
    state = {}
    for key, value in saved.items():
        name, _, slot = key[len("optim/"):].rpartition("/")
        state.setdefault(name, {})[slot] = value
    return {"t": t, "state": state}


def load(model, path, optimizer=None):
    """Read ``path`` into ``model`` (and ``optimizer``), on whatever device the model is.

    Everything is checked before anything is written: every weight and buffer (name,
    shape, dtype, finite values), and with an ``optimizer`` its type, step and every state
    array. A file that does not fit raises ``CheckpointError`` naming each difference and
    leaves the model and optimizer as they were. ``optimizer=None`` skips the optimizer.
    """
    if optimizer is not None:
        optimizer.check_model(model, "load")
    data, meta = _read(path)
    weights = {k: v for k, v in data.items() if k.startswith(("param/", "buffer/"))}
    problems = (_differences("param", model.params(), weights)
                + _differences("buffer", model.buffers(), weights, what="buffers"))
    if problems:
        raise CheckpointError(f"{path} does not fit {model.describe()}: " + "; ".join(problems) + ".")
    saved_state = None if optimizer is None else _optimizer_state(path, meta, data, model, optimizer)
    model.set_params({k.partition("/")[2]: v for k, v in weights.items()})
    if saved_state is not None:
        optimizer.load_state_dict(saved_state)
    return model
