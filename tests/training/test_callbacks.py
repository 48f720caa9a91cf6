"""Issue 27: fit's public callbacks (EarlyStopping, ModelCheckpoint, CSVLogger, a Callback
of one's own), the hooks' order and figures, a recorded fit with callbacks trained bit for
bit as one without, ModelCheckpoint under ``mpiexec -n 2``, ``fit(stream=)`` with one
meaning, and the optimizer's flat groups built when it is made."""
import contextlib
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

HERE = Path(__file__).resolve().parents[1]  # tests/, where the MPI jobs are
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def _set(n=240, seed=0):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype(numpy.float32)
    return x, (x[:, :3].sum(axis=1) > 0).astype(numpy.int64) + (x[:, 3] > 1)


def _model():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(12, 16), xn.nn.BatchNorm(16), xn.nn.ReLU(), xn.nn.Affine(16, 3))


def _fit(model, callbacks=None, epochs=4, **kwargs):
    """200 samples in batches of 32 (7 steps an epoch), 40 for validation."""
    x, t = _set()
    opt = xn.optim.Adam(model, lr=0.01)
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:200], t[:200]), epochs=epochs, batch_size=32,
                     seed=1, validation=(x[200:], t[200:]), callbacks=callbacks, **kwargs)
    return history, opt


def _weights(model):
    return {k: v.copy() for k, v in xn.to_host({**model.params(), **model.buffers()}).items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)


class Recorder(xn.callbacks.Callback):
    """Every hook, in order; the chunks' losses; the weights after each epoch; and, with
    ``scores``, a figure ``score`` per epoch added to the logs for the callbacks after it."""

    def __init__(self, scores=None, stop_after=None):
        self.calls, self.chunk_losses, self.weights, self.logs = [], [], {}, []
        self.scores, self.stop_after = scores, stop_after

    def on_train_begin(self, run):
        self.calls.append("train_begin")

    def on_epoch_begin(self, run, epoch):
        self.calls.append(f"epoch_begin {epoch}")

    def on_chunk_end(self, run, logs):
        self.calls.append("chunk")
        self.chunk_losses.extend(logs["losses"].tolist())

    def on_epoch_end(self, run, logs):
        self.calls.append(f"epoch_end {logs['epoch']}")
        if self.scores is not None:
            logs["score"] = self.scores[logs["epoch"] - 1]
        self.logs.append(dict(logs))
        self.weights[logs["epoch"]] = _weights(run.model)
        if logs["epoch"] == self.stop_after:
            run.stop_training = True

    def on_train_end(self, run):
        self.calls.append("train_end")


def test_hooks_run_in_order_with_the_figures_history_keeps(device):
    recorder = Recorder(stop_after=2)
    history, _ = _fit(_model(), [recorder], epochs=4)
    assert recorder.calls[0] == "train_begin" and recorder.calls[-1] == "train_end"
    assert [c for c in recorder.calls if c.startswith("epoch")] == [
        "epoch_begin 1", "epoch_end 1", "epoch_begin 2", "epoch_end 2"]  # stop_training ends after epoch 2
    assert recorder.calls.count("chunk") == 2 * 7  # 7 steps an epoch, read in chunks of max(1, 7 // 10)
    assert recorder.chunk_losses == history.step_loss and len(history.step_loss) == 2 * 7
    assert [log["loss"] for log in recorder.logs] == history.epoch_loss
    assert [log["val_loss"] for log in recorder.logs] == history.val_loss
    assert [log["accuracy"] for log in recorder.logs] == history.epoch_accuracy
    assert [log["seconds"] for log in recorder.logs] == history.epoch_seconds


def test_early_stopping_stops_and_restores_the_best_weights(device):
    recorder = Recorder(scores=[0.5, 0.3, 0.4, 0.35, 0.2, 0.1])  # best at epoch 2, then two without
    stop = xn.callbacks.EarlyStopping(monitor="score", patience=2)
    model = _model()
    history, _ = _fit(model, [recorder, stop], epochs=6)
    assert len(history.epoch_loss) == 4 and stop.stopped_epoch == 4 and stop.best_epoch == 2
    _assert_same(_weights(model), recorder.weights[2])
    with pytest.raises(AssertionError):  # the restore is not a no-op: epoch 4 ended elsewhere
        _assert_same(recorder.weights[4], recorder.weights[2])


def test_early_stopping_on_val_loss_counts_min_delta_and_can_keep_the_last_weights(device):
    recorder = Recorder()
    stop = xn.callbacks.EarlyStopping(patience=1, min_delta=1e9, restore_best=False)  # nothing improves by 1e9
    model = _model()
    history, _ = _fit(model, [recorder, stop], epochs=5)
    assert len(history.val_loss) == 2 and stop.best_epoch == 1 and stop.stopped_epoch == 2
    _assert_same(_weights(model), recorder.weights[2])


def test_early_stopping_without_validation_says_what_it_can_monitor(device):
    model = _model()
    x, t = _set()
    before = xn.to_host(model.params())
    for callback in (xn.callbacks.EarlyStopping(), xn.callbacks.ModelCheckpoint("m.npz", save_best_only=True)):
        with pytest.raises(ValueError, match=r"monitor='val_loss', but this fit has no validation=.*'loss'"):
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), callbacks=[callback])
    for name, value in xn.to_host(model.params()).items():  # refused before the first step
        numpy.testing.assert_array_equal(value, before[name])


def test_model_checkpoint_writes_the_best_model_atomically_and_it_loads(device, tmp_path):
    recorder = Recorder(scores=[0.5, 0.2, 0.4])  # the best epoch is 2, not the last
    path = tmp_path / "best.npz"
    checkpoint = xn.callbacks.ModelCheckpoint(path, monitor="score", save_best_only=True)
    _, opt = _fit(_model(), [recorder, checkpoint], epochs=3)
    assert checkpoint.saved == [path, path] and checkpoint.best == 0.2
    assert sorted(os.listdir(tmp_path)) == ["best.npz"]  # no temporary left beside it
    fresh = _model()
    fresh_opt = xn.optim.Adam(fresh, lr=0.5)
    xn.load(fresh, path, optimizer=fresh_opt)
    _assert_same(_weights(fresh), recorder.weights[2])
    assert fresh_opt.t == 2 * 7 and fresh_opt.lr == opt.lr  # the optimizer's state as after epoch 2


def test_model_checkpoint_every_epoch_fills_in_the_path(device, tmp_path):
    checkpoint = xn.callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.npz")
    history, _ = _fit(_model(), [checkpoint], epochs=3)
    assert [p.name for p in checkpoint.saved] == [f"ckpt-{e + 1:02d}-{loss:.3f}.npz"
                                                  for e, loss in enumerate(history.epoch_loss)]
    assert all(p.exists() for p in checkpoint.saved)


def test_a_crash_while_checkpointing_keeps_the_previous_best(device, tmp_path, monkeypatch):
    recorder = Recorder(scores=[0.5, 0.2, 0.1])
    path = tmp_path / "best.npz"

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    class Crash(xn.callbacks.Callback):
        def on_epoch_end(self, run, logs):
            if logs["epoch"] == 2:  # epoch 3's save dies while it writes
                monkeypatch.setattr(numpy, "savez", disk_full)
    checkpoint = xn.callbacks.ModelCheckpoint(path, monitor="score", save_best_only=True)
    with pytest.raises(OSError, match="disk full"):
        _fit(_model(), [recorder, checkpoint, Crash()], epochs=3)
    monkeypatch.undo()
    fresh = _model()
    xn.load(fresh, path)
    _assert_same(_weights(fresh), recorder.weights[2])
    assert sorted(os.listdir(tmp_path)) == ["best.npz"]


def test_csv_logger_writes_one_row_per_epoch(device, tmp_path):
    path = tmp_path / "log.csv"
    history, _ = _fit(_model(), [xn.callbacks.CSVLogger(path)], epochs=3)
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    kept = {"loss": "epoch_loss", "accuracy": "epoch_accuracy", "seconds": "epoch_seconds"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
        assert [float(r[key]) for r in rows] == getattr(history, kept.get(key, key)), key
    _fit(_model(), [xn.callbacks.CSVLogger(path)], epochs=2)  # a new fit starts a new file
    assert len(path.read_text().splitlines()) == 1 + 2
    _fit(_model(), [xn.callbacks.CSVLogger(path, append=True)], epochs=1)
    assert len(path.read_text().splitlines()) == 1 + 2 + 1  # appended, no second header


# Every public callback, as the generic test below runs it: a new one fails
# test_every_public_callback_is_in_the_bit_exact_test until it is added here.
CALLBACKS = {
    "EarlyStopping": lambda tmp: xn.callbacks.EarlyStopping(patience=100),
    "ModelCheckpoint": lambda tmp: xn.callbacks.ModelCheckpoint(tmp / "m-{epoch}.npz"),
    "CSVLogger": lambda tmp: xn.callbacks.CSVLogger(tmp / "log.csv"),
    "Callback": lambda tmp: Recorder(),
}


def test_every_public_callback_is_in_the_bit_exact_test():
    assert set(xn.callbacks.__all__) == set(CALLBACKS)
    for name in xn.callbacks.__all__:
        assert issubclass(getattr(xn.callbacks, name), xn.callbacks.Callback), name


def _recording_fit(device, monkeypatch, callbacks):
    """fit with graph=True; its history, weights and step count, and what the backend recorded."""
    backend = device.backend
    real, recorded = type(backend).capture, []

    def spy(self, fn):
        result, replay = real(self, fn)
        recorded.append(replay)
        return result, replay
    monkeypatch.setattr(type(backend), "capture", spy)
    model = _model()
    history, opt = _fit(model, callbacks, epochs=3, graph=True)
    monkeypatch.undo()
    return history, _weights(model), opt.t, recorded


def test_a_recorded_fit_with_callbacks_trains_bit_for_bit_like_one_without(device, tmp_path, monkeypatch):
    with_callbacks = _recording_fit(device, monkeypatch, [make(tmp_path) for make in CALLBACKS.values()])
    without = _recording_fit(device, monkeypatch, None)
    (h1, w1, t1, rec1), (h0, w0, t0, rec0) = with_callbacks, without
    _assert_same(w1, w0)
    assert h1.step_loss == h0.step_loss and h1.val_loss == h0.val_loss and t1 == t0 == 3 * 7
    assert len(rec1) == len(rec0)  # the callbacks cost no recording: the steps replay as without
    if device.kind == "sim":
        assert len(rec1) == 2 and all(r is not None for r in rec1)  # batches of 32 and of 8, recorded


# What a callback changes mid-fit reaches a recorded step (a prober's finding, session 5): each
# of these was baked into the recording, which went on replaying the old value (or updating
# the optimizer's old flat buffers after a load) while cpu used the new one.
CHANGES = {
    "momentum": lambda run, keep: setattr(run.optimizer, "momentum", 0.0),
    # a NumPy number: the watch took it for an array, and a float64 made the routine compute
    # in float64 where the cpu kernel took float32 (probers' findings, session 5)
    "momentum as a NumPy number": lambda run, keep: setattr(run.optimizer, "momentum", numpy.float64(0.45)),
    "label smoothing as a NumPy number": lambda run, keep: setattr(run.loss_fn, "label_smoothing",
                                                                   numpy.float64(0.15)),
    "nesterov": lambda run, keep: setattr(run.optimizer, "nesterov", True),
    "weight decay on": lambda run, keep: setattr(run.optimizer, "weight_decay", 0.1),
    "Dropout's p": lambda run, keep: setattr(run.model.layers[3], "p", 0.0),
    "label smoothing": lambda run, keep: setattr(run.loss_fn, "label_smoothing", 0.2),
    "schedule detached": lambda run, keep: (keep["schedule"].detach(), setattr(run.optimizer, "lr", 0.2)),
    "checkpoint loaded": lambda run, keep: xn.load(run.model, keep["path"], optimizer=run.optimizer),
    "eval mode (fit's train() comes back)": lambda run, keep: run.model.eval(),
    "a Lambda's function replaced": lambda run, keep: setattr(run.model.layers[2], "fn", lambda h: h * 0.5),
}


def _changed_fit(device, change, path):
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(12, 16), xn.nn.BatchNorm(16), xn.nn.Lambda(lambda h: h * 1.0),
                                 xn.nn.Dropout(0.3), xn.nn.Affine(16, 3))
        opt = xn.optim.Momentum(model, lr=0.05)
        keep = {"path": path, "schedule": xn.optim.schedules.WarmupCosine(opt, 3, 40)}

    class Change(xn.callbacks.Callback):
        def on_epoch_end(self, run, logs):
            if logs["epoch"] == 1:
                xn.save(run.model, path, optimizer=run.optimizer)

        def on_chunk_end(self, run, logs):  # mid-epoch, where the losses are read
            if logs["epoch"] == 2 and logs["step"] == 4:
                CHANGES[change](run, keep)
    x, t = _set()
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:200], t[:200]), epochs=4, batch_size=32, seed=1,
           callbacks=[Change()], progress=False)
    return xn.to_host({**model.params(), **model.buffers()}), opt.t


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_what_a_callback_changes_reaches_the_recorded_step(change, tmp_path):
    cpu, cpu_t = _changed_fit("cpu", change, tmp_path / "cpu.npz")
    recorded, t = _changed_fit("sim", change, tmp_path / "sim.npz")
    assert t == cpu_t
    for name, value in cpu.items():
        numpy.testing.assert_array_equal(recorded[name], value, err_msg=name)


def _recordings(monkeypatch):
    """The list each recording on sim appends to."""
    recorded = []
    backend = xn.Device("sim").backend
    record = backend.record
    monkeypatch.setattr(backend, "record", lambda fn, owners=(): recorded.append(1) or record(fn, owners))
    return recorded


def test_a_callback_that_reads_evaluates_or_sets_the_rate_keeps_the_recording(monkeypatch):
    """The watch records nothing new where no baked-in setting changed: one recording per
    batch size, as before, with a callback that reads, evaluates the model in eval mode
    (which rewrites the layers' per-call attributes) and sets the rate, which the step reads
    on the device (a reviewer's finding: each of these recorded the step again)."""
    recorded = _recordings(monkeypatch)
    x, t = _set()

    class Busy(xn.callbacks.Callback):
        rates = []

        def on_chunk_end(self, run, logs):
            self.rates.append(run.optimizer.lr)
            xn.evaluate(run.model, (x[200:], t[200:]))
            xn.predict(run.model, x[:5])
            run.optimizer.lr = 0.01 / logs["step"]
    with xn.use_device("sim"):
        model = xn.nn.Sequential(xn.nn.Affine(12, 16), xn.nn.BatchNorm(16), xn.nn.ReLU(), xn.nn.Dropout(0.2),
                                 xn.nn.Affine(16, 3))
        _fit(model, callbacks=[Busy()], progress=False)
    assert len(recorded) == 2  # batches of 32, and the last one of 8


class _Gate(xn.nn.Layer):
    """x * y, caching (x, y) per call under its own name, as book-style layers do; ``y`` a
    setting whose name a built-in layer uses for a per-call value."""

    def __init__(self, y=1.0):
        super().__init__()
        self.y = y

    def forward(self, x):
        self.cache = (x, x * self.y)
        return self.cache[1]

    def backward(self, dout):
        return dout * self.y


def test_a_layers_own_settings_and_caches_are_watched_as_objects(monkeypatch):
    """A prober's findings on this session's watch: a tuple of arrays cached per call made
    the comparison raise (ValueError, on cpu too), and a setting named y was never watched."""
    weights = {}
    x, t = _set()

    class Halve(xn.callbacks.Callback):
        def on_epoch_end(self, run, logs):
            run.model.layers[1].y = 0.5
    for device in ("cpu", "sim"):
        with xn.use_device(device):
            xn.seed(0)
            model = xn.nn.Sequential(xn.nn.Affine(12, 16), _Gate(), xn.nn.Affine(16, 3))
            opt = xn.optim.SGD(model, lr=0.05)
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:200], t[:200]), epochs=3, batch_size=32, seed=1,
               validation=(x[200:], t[200:]), callbacks=[Halve()], progress=False)
        weights[device] = xn.to_host(model.params())
    for name, value in weights["cpu"].items():
        numpy.testing.assert_array_equal(weights["sim"][name], value, err_msg=name)


class _MomentumDecay(xn.optim.schedules.StepDecay):
    """A schedule of one's own that also lowers the momentum: user code fit runs itself."""

    def step(self):
        super().step()
        self.optimizer.momentum *= 0.5


def test_what_a_schedules_step_changes_reaches_the_recorded_step():
    """A reviewer's finding (session 5): fit's own callback ran the schedule's step outside
    the watch, so the recording kept the first momentum."""
    weights = {}
    for device in ("cpu", "sim"):
        with xn.use_device(device):
            xn.seed(0)
            model = xn.nn.Sequential(xn.nn.Affine(12, 16), xn.nn.ReLU(), xn.nn.Affine(16, 3))
            opt = xn.optim.Momentum(model, lr=0.05)
        x, t = _set()
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=3, batch_size=32, seed=1, progress=False,
               schedule=_MomentumDecay(opt, step_size=1, gamma=0.5))
        weights[device] = xn.to_host(model.params())
    for name, value in weights["cpu"].items():
        numpy.testing.assert_array_equal(weights["sim"][name], value, err_msg=name)


def _resumable(device, tmp_path, epochs, initial_epoch=0, path=None):
    """A shuffled fit with Dropout, checkpointing every epoch to ckpt-{epoch}.npz and logging;
    from ``path`` (a checkpoint) and ``initial_epoch`` when given."""
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(12, 16), xn.nn.ReLU(), xn.nn.Dropout(0.2), xn.nn.Affine(16, 3))
        opt = xn.optim.Adam(model, lr=0.01)
        schedule = xn.optim.schedules.StepDecay(opt, step_size=1, gamma=0.5)
        if path is not None:
            xn.load(model, path, optimizer=opt, schedule=schedule)
    x, t = _set()
    callbacks = [xn.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz")),
                 xn.callbacks.CSVLogger(tmp_path / "log.csv")]
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=epochs, batch_size=32, schedule=schedule,
           callbacks=callbacks, progress=False, initial_epoch=initial_epoch)
    return xn.to_host(model.params())


def test_a_fit_resumed_with_initial_epoch_trains_and_numbers_as_if_it_had_not_stopped(device, tmp_path):
    """A prober's finding (session 5): a resumed fit numbered its epochs from 1 again, so
    ModelCheckpoint's ckpt-1 and ckpt-2 were overwritten with epochs 3 and 4 and the CSV log
    started anew; and its shuffles repeated the first run's first orders."""
    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    whole = _resumable(device, tmp_path / "whole", 4)
    _resumable(device, tmp_path / "resumed", 2)
    first_two = {k: (tmp_path / "resumed" / f"ckpt-{k}.npz").read_bytes() for k in (1, 2)}
    resumed = _resumable(device, tmp_path / "resumed", 4, initial_epoch=2, path=tmp_path / "resumed" / "ckpt-2.npz")
    for name, value in whole.items():
        numpy.testing.assert_array_equal(resumed[name], value, err_msg=name)
    assert all((tmp_path / "resumed" / f"ckpt-{k}.npz").read_bytes() == first_two[k] for k in (1, 2))
    assert (tmp_path / "resumed" / "ckpt-4.npz").exists()
    rows = list(csv.reader(open(tmp_path / "resumed" / "log.csv")))
    assert [row[0] for row in rows] == ["epoch", "1", "2", "3", "4"]  # one header, the rows continued
    assert (tmp_path / "resumed" / "log.csv").read_text().count("\n") == 5


def test_a_resumed_fit_does_not_replace_the_best_checkpoint_with_a_worse_epoch(tmp_path, monkeypatch):
    """A prober's finding (session 5): ModelCheckpoint's best started anew in a resumed fit,
    so its first epoch replaced best.npz, however much worse. Without the best value (the
    file does not keep it) such a fit is refused; with initial_value_threshold only a better
    epoch is saved."""
    best = tmp_path / "best.npz"
    model = _model()
    _fit(model, callbacks=[xn.callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True)], epochs=2)
    kept = best.read_bytes()
    with pytest.raises(ValueError, match=r"resumes after epoch 2 and .*best\.npz' holds the best model so far.*"
                                         r"initial_value_threshold="):
        _fit(model, callbacks=[xn.callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True)],
             epochs=4, initial_epoch=2)
    braced = tmp_path / "best{v1}.npz"  # a fixed name written with {{ }}: the same refusal
    braced.write_bytes(kept)
    with pytest.raises(ValueError, match=r"best\{v1\}\.npz' holds the best model so far"):
        _fit(model, callbacks=[xn.callbacks.ModelCheckpoint(str(tmp_path / "best{{v1}}.npz"), monitor="loss",
                                                            save_best_only=True)], epochs=4, initial_epoch=2)
    guard = xn.callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True, initial_value_threshold=1e-9)
    _fit(model, callbacks=[guard], epochs=4, initial_epoch=2)
    assert best.read_bytes() == kept and guard.saved == []  # no epoch beat 1e-9
    from xpnet.training import writers
    monkeypatch.setattr(writers.os, "access", lambda path, mode: False)  # best.npz read-only (tests run as root)
    with pytest.raises(PermissionError, match=r"best\.npz' is read-only, so no epoch could be saved there"):
        _fit(model, callbacks=[xn.callbacks.ModelCheckpoint(best, monitor="loss")], epochs=1)


def test_initial_epoch_must_leave_an_epoch_to_train():
    model = _model()
    with pytest.raises(ValueError, match=r"initial_epoch=3 leaves no epoch to train with epochs=3.*pass epochs=3 \+ n"):
        _fit(model, epochs=3, initial_epoch=3)


def test_fit_refuses_a_callback_that_is_not_one(device):
    with pytest.raises(TypeError, match=r"callbacks\[1\] is a function, not an xn.callbacks.Callback"):
        _fit(_model(), [xn.callbacks.CSVLogger("unused.csv"), lambda run: None])


def test_callback_arguments_are_checked_where_they_are_written():
    with pytest.raises(ValueError, match="patience must be an integer >= 0, got -1"):
        xn.callbacks.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be a finite number"):
        xn.callbacks.EarlyStopping(min_delta=-0.1)
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'lowest'"):
        xn.callbacks.ModelCheckpoint("m.npz", mode="lowest")


# fit(stream=): whether to stream, and nothing else -----------------------------------------

def test_stream_is_true_false_or_none(device):
    model = _model()
    x, t = _set()
    with pytest.raises(TypeError, match=r"stream must be True, False or None .* got str 'yes'"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), stream="yes")


def test_a_memory_share_as_stream_is_deprecated_and_still_honoured(device):
    x, t = _set()
    runs = []
    for stream in (False, 0.9):  # the set is a sliver of any device's memory: copied once, either way
        model = _model()
        before = xn.transfer_stats()
        warns = (pytest.warns(DeprecationWarning, match=r"fit\(stream=0.9\): a share .* is deprecated")
                 if stream else contextlib.nullcontext())
        with warns:
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=40,
                   stream=stream)
        runs.append(((xn.transfer_stats() - before).h2d_count, _weights(model)))
    assert runs[0][0] == runs[1][0]
    _assert_same(runs[0][1], runs[1][1])


# the optimizer's flat groups: public, built when it is made ---------------------------------

def test_the_optimizer_lays_out_its_flat_groups_when_it_is_made(device):
    model = _model()
    opt = xn.optim.Momentum(model, lr=0.1)
    groups = opt.groups()
    assert len(groups) == 1 and groups[0].p.size == sum(p.size for p in model.params().values())
    assert opt.flat_grads()[0] is groups[0].g
    groups[0].g[...] = 3  # the model's gradients are views of the flat gradient, before any step
    for name, g in xn.to_host(model.grads()).items():
        assert (g == 3).all(), name
    groups[0].p[...] = 0  # and its parameters, views of the flat parameters
    assert all((p == 0).all() for p in xn.to_host(model.params()).values())
    assert opt.groups() is groups  # built once; rebuilt only after the model moved or changed


# ModelCheckpoint and CSVLogger under mpiexec -n 2 ---------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'xpnet[mpi]' (mpi4py and MPICH)")
@pytest.mark.parametrize("where", ["cpu", "sim"])
def test_two_ranks_checkpoint_the_best_model_once_and_it_loads(tmp_path, where):
    env = {k: v for k, v in os.environ.items() if k != "XPNET_DEVICE"}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "callbacks_job.py"), where,
                             str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert sorted(re.findall(r"rank \d: the checkpoint holds epoch \d's model", result.stdout)) == [
        "rank 0: the checkpoint holds epoch 2's model", "rank 1: the checkpoint holds epoch 2's model"]
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "log.csv"]
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 1 + 3  # one header, a row an epoch
