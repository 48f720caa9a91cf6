"""Checkpoints: ``save(model, path)`` and ``load(model, path)``, as ``.npz``, never pickle.

The file holds each parameter and buffer by name, a JSON record of names, shapes,
dtypes, the device it was saved from and the xpnet version, and optionally the
optimizer's state. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the target, so a crash leaves either the old file or the new
one, never half of one. Loading checks everything before writing anything: a file that
does not fit leaves the model as it was.
"""
from __future__ import annotations

import json
import os
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

    The model stays where it is; its arrays are copied to the host for writing.
    """
    from . import __version__
    if optimizer is not None:
        optimizer.check_model(model, "save")
    path = Path(path)
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                              f"this xpnet reads {FORMAT!r} version {VERSION}.")
    return data, meta


def _differences(prefix, expected, data):
    problems = []
    for name, array in expected.items():
        key = f"{prefix}/{name}"
        if key not in data:
            problems.append(f"missing {name!r}")
        elif data[key].shape != array.shape:
            problems.append(f"{name!r} has shape {data[key].shape} in the file, {tuple(array.shape)} in the model")
        elif data[key].dtype != array.dtype:
            problems.append(f"{name!r} is {data[key].dtype} in the file, {array.dtype} in the model")
    extra = sorted(k.partition("/")[2] for k in data if k.startswith(prefix + "/")
                   and k.partition("/")[2] not in expected)
    if extra:
        problems.append(f"the file has parameters the model lacks: {extra}")
    return problems


def load(model, path, optimizer=None):
    """Read ``path`` into ``model`` (and ``optimizer``), on whatever device the model is.

    Raises ``CheckpointError`` naming every difference when the file does not fit; the
    model and optimizer are left unchanged then.
    """
    if optimizer is not None:
        optimizer.check_model(model, "load")
    data, meta = _read(path)
    problems = (_differences("param", model.params(), data)
                + _differences("buffer", model.buffers(), data))
    if problems:
        raise CheckpointError(f"{path} does not fit {model.describe()}: " + "; ".join(problems) + ".")
    saved_state = None
    if optimizer is not None:
        info = meta.get("optimizer")
        if info is None:
            raise CheckpointError(f"{path} holds no optimizer state; save it with "
                                  f"xn.save(model, path, optimizer=opt).")
        if info["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{path} holds {info['type']} state, not {type(optimizer).__name__}.")
        state = {}
        for key, value in data.items():
            if key.startswith("optim/"):
                _, name, slot = key.split("/", 2)
                state.setdefault(name, {})[slot] = value
        saved_state = {"t": info["t"], "state": state}
    values = {k.partition("/")[2]: v for k, v in data.items() if k.startswith(("param/", "buffer/"))}
    model.set_params(values)
    if saved_state is not None:
        optimizer.load_state_dict(saved_state)
    return model
