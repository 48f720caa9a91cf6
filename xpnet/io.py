"""Checkpoints: ``save(model, path)`` and ``load(model, path)``, as ``.npz``, never pickle.

The file holds each parameter and buffer by name, a JSON record of names, shapes,
dtypes, the device it was saved from and the xpnet version, and optionally the
optimizer's state (step count, learning rate, scalar state, per-parameter arrays) and a
learning-rate schedule's (epoch, base rate). It is written to a temporary file in the
same folder, flushed to disk, then renamed over the target, so a crash leaves either the
old file or the new one, never half of one. One rule decides which values a checkpoint
may hold, and both directions apply it: ``save`` refuses what ``load`` would refuse.
Loading checks everything before writing anything: a file that does not fit leaves the
model as it was.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy

from ._files import remove_stale_temporaries, write_atomically
from .device import device_of, use_device
from .errors import CheckpointError
from .transfer import to_device, to_host

FORMAT = "xpnet-checkpoint"
VERSION = 1
_META = "__xpnet__"
MAX_STEPS = 2 ** 53  # a larger step count is damage: it is an int64 on the device and a float64 exponent


def _spec(arrays):
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}


def _check_companions(model, optimizer, schedule, where):
    """Refuse an optimizer built for another model, and a schedule without its optimizer."""
    if optimizer is not None:
        optimizer.check_model(model, where)
    if schedule is not None and (optimizer is None or schedule.optimizer is not optimizer):
        given = "no optimizer=" if optimizer is None else f"optimizer={type(optimizer).__name__} (another object)"
        raise ValueError(f"{where}: schedule={type(schedule).__name__} sets the rate of the optimizer it was "
                         f"built for ({type(schedule.optimizer).__name__}), but {given} was given. Pass that "
                         f"optimizer too: xn.{where}(model, path, optimizer=opt, schedule=schedule).")


def save(model, path, optimizer=None, schedule=None) -> Path:
    """Write ``model`` (and ``optimizer``'s state, and ``schedule``'s, if given) to ``path``
    atomically.

    The model stays where it is; its arrays are copied to the host for writing. What
    ``load`` would refuse is not written: weights must be finite (buffers may hold +-inf,
    never NaN) and optimizer state finite (sums of squares not negative); otherwise
    ``CheckpointError`` says what, in load's words, and a file already at ``path`` is left
    as it was. The optimizer's state is its step count, learning rate, scalar state and
    per-parameter arrays; a schedule's is its epoch and base rate (``schedule=`` needs its
    ``optimizer=``). Saving over a file keeps its permissions (a new file gets the umask's);
    a symlink is written through (its target is replaced, the link kept). Temporary files
    that a killed save of the same checkpoint left behind are removed.

    In a distributed run (``mpiexec``) every rank calls ``save``, as every rank calls
    ``fit``: only rank 0 writes (the ranks hold the same model), and no rank returns before
    the file is in place, so a ``load`` right after reads the new file on every rank. Where
    rank 0's write fails, every rank raises: rank 0 its error, the others a
    ``CheckpointError`` saying so.
    """
    from . import distributed
    from ._version import __version__
    _check_companions(model, optimizer, schedule, "save")
    arrays, meta = _contents(model, optimizer, schedule, __version__)
    problems = _weight_problems(model, arrays)
    if optimizer is not None:
        problems += _state_problems(optimizer, meta["optimizer"], arrays)
    if problems:
        raise CheckpointError(f"save: {path} was not written (a file already there is left as it was), "
                              f"since load would refuse it: {'; '.join(problems)}. Save the model from a "
                              f"step before the values went bad (fit restores the last good step when the "
                              f"loss becomes NaN).")
    target = Path(os.path.realpath(path))
    if not distributed.launched():
        _write(target, arrays)
        return Path(path)
    failure = None
    if distributed.rank() == 0:
        try:
            _write(target, arrays)
        except BaseException as exc:  # told to every rank first, then raised
            failure = exc
    written = numpy.array([failure is None], dtype=numpy.int8)
    distributed.broadcast({"written": written})  # no rank returns before rank 0's write is done
    if failure is not None:
        raise failure
    if not written[0]:
        raise CheckpointError(f"save: rank 0 could not write {path} (its error says why); a file already "
                              f"there is left as it was.")
    return Path(path)


def _contents(model, optimizer, schedule, version):
    """The arrays to write (host copies, by name, the record among them) and the record."""
    params = to_host(model.params())
    buffers = to_host(model.buffers())
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"buffer/{k}": v for k, v in buffers.items()})
    arrays.update({f"random/{k}": v for k, v in to_host(model.random_state()).items()})
    meta = {"format": FORMAT, "version": VERSION, "xpnet": version,
            "device": str(model.device), "model": model.describe(),
            "params": _spec(params), "buffers": _spec(buffers), "optimizer": None}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"type": type(optimizer).__name__, "t": state["t"], "lr": state["lr"],
                             "scalars": state["scalars"]}
        for name, slots in to_host(state["state"]).items():
            for key, value in slots.items():
                arrays[f"optim/{name}/{key}"] = value
    if schedule is not None:
        meta["schedule"] = {"type": type(schedule).__name__, **schedule.state_dict()}
    arrays[_META] = numpy.array(json.dumps(meta))
    return arrays, meta


def _write(target: Path, arrays) -> None:
    """``arrays`` as an .npz at ``target``, written atomically."""
    remove_stale_temporaries(target)
    write_atomically(target, lambda f: numpy.savez(f, **arrays))


def _read(path):
    try:
        f = numpy.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable xpnet checkpoint ({type(exc).__name__}: "
                              f"{exc}); it may be truncated, damaged or not an .npz file.") from None
    if not isinstance(f, numpy.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} holds one NumPy array (an .npy file), not an xpnet checkpoint (an .npz "
                              f"archive that xn.save writes). Pass the file xn.save wrote.")
    try:
        with f:
            data = {k: f[k] for k in f.files}
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


def _value_problem(name, array, kind, nonnegative=False):
    """Why ``array``'s values cannot be in a checkpoint, or None; save and load say it alike,
    and so does ``Layer.set_params``. ``kind`` is "weights" (finite), "buffers" (+-inf
    allowed, never NaN) or "state" (finite). A device array is checked on its device (a
    few flags are read back, not the array)."""
    if array.dtype.kind not in "fc":
        return None
    if isinstance(array, numpy.ndarray):
        nan, infinite = bool(numpy.isnan(array).any()), bool(numpy.isinf(array).any())
        negative = nonnegative and bool((array < 0).any())
    else:
        device = device_of(array)
        with use_device(device):
            xp = device.xp
            flags = xp.stack([xp.isnan(array).any(), xp.isinf(array).any(),
                              (array < 0).any() if nonnegative else xp.zeros((), dtype=bool)])
            nan, infinite, negative = (bool(v) for v in to_host(flags))
    if kind == "buffers" and nan:
        return f"{name!r} holds NaN (buffers may hold +-inf, never NaN)"
    if kind != "buffers" and (nan or infinite):
        what = "weights" if kind == "weights" else "optimizer state"
        return f"{name!r} holds NaN or infinite values ({what} must be finite)"
    if negative:
        return (f"{name!r} holds negative values (smallest {float(to_host(array.min()))!r}); it is a variance "
                f"or a sum of squares, never negative")
    return None


def _differences(prefix, expected, data, what="parameters", kind="weights", nonnegative=()):
    """What keeps ``data``'s arrays under ``prefix/`` from fitting ``expected`` exactly; a
    name whose last part is in ``nonnegative`` may hold no negative value."""
    problems = []
    for name, array in expected.items():
        key = f"{prefix}/{name}"
        if key not in data:
            problems.append(f"missing {name!r}")
        elif data[key].shape != tuple(array.shape):
            problems.append(f"{name!r} has shape {data[key].shape} in the file, {tuple(array.shape)} in the model")
        elif data[key].dtype != array.dtype:
            problems.append(f"{name!r} is {data[key].dtype} in the file, {array.dtype} in the model")
        else:
            problem = _value_problem(name, data[key], kind, name.rpartition("/")[2] in nonnegative)
            if problem:
                problems.append(problem)
    extra = sorted(k[len(prefix) + 1:] for k in data if k.startswith(prefix + "/")
                   and k[len(prefix) + 1:] not in expected)
    if extra:
        problems.append(f"the file has {what} the model lacks: {extra}")
    return problems


def _weight_problems(model, data):
    return (_differences("param", model.params(), data)
            + _differences("buffer", model.buffers(), data, what="buffers", kind="buffers",
                           nonnegative=model._nonnegative_buffers()))


def _number_problem(name, value, nonnegative=False):
    """Why a number of the record (the rate, a scalar state) is not a fit one, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name!r} is {value!r}, not a number"
    if not math.isfinite(value):
        return f"{name!r} is {value!r}, not finite"
    if nonnegative and value < 0:
        return f"{name!r} is {value!r}, but it is never negative"
    return None


def _state_problems(optimizer, info, data):
    """What load would refuse in the optimizer's record ``info`` (besides its type and step
    count) and its arrays ``optim/<parameter>/<state>`` in ``data``."""
    problems = []
    if info.get("lr") is not None:
        problem = _number_problem("lr", info["lr"], nonnegative=True)
        if problem:
            problems.append(problem)
    scalars = info.get("scalars") or {}
    if not isinstance(scalars, dict):
        return problems + [f"its scalar state is a {type(scalars).__name__}, not a record"]
    for name in optimizer.scalar_state:
        problem = (f"missing scalar state {name!r}" if name not in scalars
                   else _number_problem(name, scalars[name], name in optimizer.nonnegative))
        if problem:
            problems.append(problem)
    extra = sorted(set(scalars) - set(optimizer.scalar_state))
    if extra:
        problems.append(f"the file has scalar state {type(optimizer).__name__} lacks: {extra}")
    saved = {k: v for k, v in data.items() if k.startswith("optim/")}
    if info.get("t") == 0 and not saved:
        return problems  # saved before its first step: no arrays yet
    expected = {f"{name}/{slot}": p for name, p in optimizer.model.params().items()
                for slot in optimizer.state_names}
    return problems + _differences("optim", expected, saved, what="optimizer state", kind="state",
                                   nonnegative=optimizer.nonnegative)


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
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= MAX_STEPS:
        raise CheckpointError(f"{path}: the optimizer's step count 't' is {t!r}; expected a whole "
                              f"number from 0 to 2**53. The file is damaged.")
    problems = _state_problems(optimizer, info, data)
    if problems:
        raise CheckpointError(f"{path}: the {kind} state does not fit {model.describe()}: "
                              + "; ".join(problems) + ". Load with optimizer=None to skip it.")
    state = {}
    for key, value in data.items():
        if key.startswith("optim/"):
            name, _, slot = key[len("optim/"):].rpartition("/")
            state.setdefault(name, {})[slot] = value
    scalars = info.get("scalars")
    return {"t": t, "lr": info.get("lr"), "state": state,
            "scalars": None if scalars is None else {k: float(v) for k, v in scalars.items()}}


def _schedule_state(path, meta, schedule):
    """The schedule's saved state, checked against ``schedule``."""
    info, name = meta.get("schedule"), type(schedule).__name__
    if info is None:
        raise CheckpointError(f"{path} holds no schedule state; save it with xn.save(model, path, "
                              f"optimizer=opt, schedule=schedule), or load without schedule=.")
    kind = info.get("type") if isinstance(info, dict) else type(info).__name__
    if kind != name:
        raise CheckpointError(f"{path} holds {kind} schedule state, not {name}.")
    try:
        return schedule.checked_state({k: v for k, v in info.items() if k != "type"})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the {name} state does not fit ({exc}); the file is damaged.") from None


def _random_state(path, model, data):
    """(live array, saved value) pairs of what decides the model's random draws (Dropout's
    counters), so a resumed run draws what an uninterrupted one would. A file written
    before they were saved has none, and the model keeps its own."""
    live = model.random_state()
    pairs, problems = [], []
    for key, value in data.items():
        if not key.startswith("random/"):
            continue
        name = key[len("random/"):]
        if name not in live:
            problems.append(f"the file has random state {name!r} the model lacks")
        elif value.shape != tuple(live[name].shape) or value.dtype != live[name].dtype:
            problems.append(f"random state {name!r} is {value.dtype} {value.shape} in the file, "
                            f"{live[name].dtype} {tuple(live[name].shape)} in the model")
        else:
            pairs.append((live[name], value))
    if problems:
        raise CheckpointError(f"{path} does not fit {model.describe()}: " + "; ".join(problems) + ".")
    return pairs


def load(model, path, optimizer=None, schedule=None):
    """Read ``path`` into ``model`` (and ``optimizer``, and ``schedule``), on whatever
    device the model is.

    Everything is checked before anything is written: every weight and buffer (name,
    shape, dtype; weights finite, buffers not NaN), with an ``optimizer`` its type, step
    count (0 to 2**53), rate, scalar state and every state array (finite; sums of squares
    not negative), and with a ``schedule`` its type and state. A file that does not fit
    raises ``CheckpointError`` naming each difference and leaves the model, optimizer and
    schedule as they were. The optimizer gets its saved learning rate back (its
    hyperparameters, such as Adam's betas, stay the constructor's) and the schedule its
    epoch and base rate, so training goes on as if it had not stopped; the state moves to
    the model's device on the next step. ``optimizer=None`` skips the optimizer (and
    ``schedule=`` needs it).
    """
    _check_companions(model, optimizer, schedule, "load")
    data, meta = _read(path)
    weights = {k: v for k, v in data.items() if k.startswith(("param/", "buffer/"))}
    problems = _weight_problems(model, weights)
    if problems:
        raise CheckpointError(f"{path} does not fit {model.describe()}: " + "; ".join(problems) + ".")
    randoms = _random_state(path, model, data)
    saved_state = None if optimizer is None else _optimizer_state(path, meta, data, model, optimizer)
    saved_schedule = None if schedule is None else _schedule_state(path, meta, schedule)
    targets = {**model.params(), **model.buffers()}  # all checked above: written as set_params would
    model._write([(targets[k.partition("/")[2]], v) for k, v in weights.items()])
    for live, value in randoms:
        with device_of(live).backend.activate():
            live[...] = to_device(value, device_of(live))
    if saved_state is not None:
        optimizer.load_state_dict(saved_state)
    if saved_schedule is not None:
        schedule.load_state_dict(saved_schedule)
    return model
