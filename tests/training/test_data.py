"""Issue 19: training from data that stays on the host: memory-maps, Loaders, generators,
streamed one batch at a time, with the same results as the in-memory path."""
import numpy
import pytest

import xpnet as xn


def _set(n=300, seed=0):
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((n, 20)).astype(numpy.float32), rng.integers(0, 4, n)


def _model():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(20, 16), xn.nn.BatchNorm(16), xn.nn.ReLU(), xn.nn.Dropout(0.1),
                            xn.nn.Affine(16, 4))


def _train(data, **kwargs):
    model = _model()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=0.01), data, **kwargs)
    return history, xn.to_host(model.params())


def _same(a, b):
    (ha, pa), (hb, pb) = a, b
    numpy.testing.assert_array_equal(ha.step_loss, hb.step_loss)
    assert ha.epoch_accuracy == hb.epoch_accuracy
    for name in pa:
        numpy.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


def test_a_memory_mapped_set_trains_like_the_same_set_in_memory(device, tmp_path):
    x, t = _set()
    xm, tm = xn.datasets.load_memmap(xn.datasets.to_memmap(tmp_path / "set", x, t))
    assert isinstance(xm, numpy.memmap)
    kwargs = dict(epochs=2, batch_size=64, seed=3)
    in_memory = _train((x, t), **kwargs)
    _same(in_memory, _train((xm, tm), **kwargs))                  # copied to the device once
    _same(in_memory, _train((xm, tm), stream=True, **kwargs))     # read a batch at a time


def test_a_set_larger_than_the_device_streams_by_itself(tmp_path, monkeypatch):
    x, t = _set()
    sim = xn.Device("sim").backend
    monkeypatch.setattr(sim, "memory_limit", x.nbytes)  # the set takes more than half of it
    with xn.use_device("sim"):
        before = xn.transfer_stats()
        streamed = _train((x, t), epochs=2, batch_size=64, seed=3)
        copies = xn.transfer_stats() - before
    assert copies.h2d_bytes < 3 * (x.nbytes + t.nbytes)  # x and t once per epoch, in batches
    assert copies.h2d_count >= 2 * 2 * 5                 # two arrays, five batches, two epochs
    monkeypatch.setattr(sim, "memory_limit", 3 * (x.nbytes + t.nbytes))
    with xn.use_device("sim"):
        for share, copies in ((None, 2 + 2), (True, 2 * 2 * 5)):  # a third of the memory: copied once,
            model = _model()                                      # (and an order an epoch), unless
            opt = xn.optim.Adam(model, lr=0.01)                   # streaming is asked for
            before = xn.transfer_stats()
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x, t), epochs=2, batch_size=64, seed=3, stream=share)
            assert (xn.transfer_stats() - before).h2d_count == copies
            for name, value in xn.to_host(model.params()).items():
                numpy.testing.assert_array_equal(value, streamed[1][name])
    monkeypatch.setattr(sim, "memory_limit", None)
    with xn.use_device("sim"):
        _same(streamed, _train((x, t), epochs=2, batch_size=64, seed=3))


def test_iterables_of_host_batches_train_like_arrays(device):
    x, t = _set()
    batches = [(x[lo:lo + 50], t[lo:lo + 50]) for lo in range(0, 300, 50)]
    arrays = _train((x, t), epochs=2, batch_size=50, shuffle=False)
    _same(arrays, _train(batches, epochs=2))
    _same(arrays, _train(xn.data.Loader(x, t, batch_size=50), epochs=2))
    generator = ((xb, tb) for xb, tb in batches)
    _same(_train((x, t), batch_size=50, shuffle=False), _train(generator))


def test_a_generator_runs_one_epoch_and_says_so(device):
    """Before the first step (a prober's finding, session 5: it was refused after training an
    epoch, whose history was lost), as validation= refuses one."""
    x, t = _set()
    generator = ((x[lo:lo + 50], t[lo:lo + 50]) for lo in range(0, 300, 50))
    with pytest.raises(TypeError, match="a generator, which can be read only once, but fit trains 2 epochs"):
        _train(generator, epochs=2)
    assert next(generator)[0].shape == (50, x.shape[1])  # not a batch read


def test_an_iterable_that_runs_dry_after_one_epoch_says_so(device):
    x, t = _set()

    class Once:
        def __init__(self):
            self.batches = iter([(x[lo:lo + 50], t[lo:lo + 50]) for lo in range(0, 300, 50)])

        def __iter__(self):
            return self.batches
    with pytest.raises(ValueError, match="epoch 2 had no batches.*generator runs once"):
        _train(Once(), epochs=2)


def test_fit_names_an_empty_list_and_a_loader_that_gives_no_batch():
    x, t = _set()
    with pytest.raises(xn.ShapeError, match=r"fit data is empty \(a list of no batches\)"):
        _train([], epochs=1)
    with pytest.raises(xn.ShapeError, match=r"the Loader gives no batch: drop_last=True with batch_size=500 leaves "
                                            r"none of its 300 samples"):
        _train(xn.data.Loader(x[:300], t[:300], 500, drop_last=True), epochs=1)


def test_a_loader_shuffles_transforms_and_drops_the_short_batch():
    x, t = _set(n=130)
    seen = []
    loader = xn.data.Loader(x, t, batch_size=50, shuffle=True, seed=1, drop_last=True,
                            transform=lambda xb, tb: (seen.append(len(xb)) or xb * 2, tb))
    assert len(loader) == 2
    first, second = [tb.copy() for _, tb in loader], [tb.copy() for _, tb in loader]
    assert seen == [50, 50, 50, 50] and not numpy.array_equal(numpy.concatenate(first), numpy.concatenate(second))
    xb, _ = next(iter(xn.data.Loader(x, t, batch_size=4, transform=lambda xb, tb: (xb * 2, tb))))
    numpy.testing.assert_array_equal(xb, 2 * x[:4])


def test_labels_in_a_stream_are_checked_batch_by_batch(device):
    x, t = _set()
    t = t.copy()
    t[170] = 9  # the model has 4 outputs
    with pytest.raises(ValueError, match=r"batch 3: label 9 at position 20 is not a class index for a model with 4"):
        _train(xn.data.Loader(x, t, batch_size=50))


def test_predict_and_evaluate_stream_memory_maps_and_iterables(device, tmp_path):
    x, t = _set()
    xm, tm = xn.datasets.load_memmap(xn.datasets.to_memmap(tmp_path / "set", x, t))
    model = _model()
    whole = xn.to_host(xn.predict(model, x, batch_size=64))
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, xm, batch_size=64)), whole)
    # the same 64-row batches as a list: cuBLAS picks its kernel (and so the rounding) by shape
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, [x[i:i + 64] for i in range(0, len(x), 64)])),
                                     whole)
    reference = xn.evaluate(model, (x, t))
    assert xn.evaluate(model, (xm, tm)) == reference
    assert xn.evaluate(model, xn.data.Loader(x, t, batch_size=1000)) == reference


def test_predict_takes_what_fit_and_evaluate_take_and_reads_no_label(device):
    """A prober's finding (session 5): a pair (x, t) was read as two input batches (t through
    the model: 2N outputs, silently, where t was as wide as the input), and a Loader or a
    list of (xb, tb) batches raised. Two arrays of one shape and dtype are a pair for fit
    and two batches for a list of inputs: predict refuses to guess."""
    rng = numpy.random.default_rng(0)
    x = rng.random((50, 4)).astype(numpy.float32)
    labels = numpy.arange(50) % 4
    onehot = numpy.eye(4, dtype=numpy.float32)[labels]
    with xn.use_device(device):
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(4, 4))
    whole = xn.to_host(xn.predict(model, x, batch_size=10))
    for data in ((x, labels), [x, labels], (x, onehot[:, :3]), (x.tolist(), labels.tolist()),
                 xn.data.Loader(x, onehot, 10), [(x[i:i + 10], onehot[i:i + 10]) for i in range(0, 50, 10)],
                 [x[i:i + 10] for i in range(0, 50, 10)]):
        numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, data, batch_size=10)), whole)  # one shape
    # two batches of other lengths: other product shapes, which cuBLAS may round otherwise
    numpy.testing.assert_allclose(xn.to_host(xn.predict(model, [x[:30], x[30:]])), whole, rtol=1e-6)
    for ambiguous in ((x, onehot), [x[:25], x[25:]], [x[:25], x[25:].astype(numpy.float64)]):
        with pytest.raises(ValueError, match=r"two arrays of one shape \(\d+, 4\): a pair"):
            xn.predict(model, ambiguous)
    lists = [[x[i:i + 10], onehot[i:i + 10]] for i in range(0, 50, 10)]  # (xb, tb) as lists, as fit takes them
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, lists)), whole)
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, iter([x[:25], x[25:]]), batch_size=25)),
                                     xn.to_host(xn.predict(model, x, batch_size=25)))
    xor = xn.to_host(xn.predict(xn.nn.Sequential(xn.nn.Affine(2, 3, dtype="float64")), [[0, 1], [1, 0]]))
    assert xor.shape == (2, 3)  # nested numbers: one input, not a pair
    rows = x.tolist()  # batches of nested rows, the last of two: two rows, not a pair (x, t)
    numpy.testing.assert_allclose(xn.to_host(xn.predict(model, iter([rows[:48], rows[48:]]))), whole, rtol=1e-6)


def test_a_changed_memmap_file_is_refused(tmp_path):
    folder = xn.datasets.to_memmap(tmp_path / "set", *_set())
    data = bytearray((folder / "t.npy").read_bytes())
    data[-1] ^= 1
    (folder / "t.npy").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        xn.datasets.load_memmap(folder)
    with pytest.raises(ValueError, match="no dataset.json"):
        xn.datasets.load_memmap(tmp_path)


def test_each_copy_goes_out_a_step_ahead_and_each_step_waits_for_its_own_only():
    """The streamed pipeline's order, from sim's stream/event log: the copies of batch k+1
    are issued before step k is queued (so on a GPU they overlap it), step k waits for
    batch k's copies and no others, and a copy into a buffer pair waits for the step that
    last read that pair (batch k+2 after step k)."""
    x, t = _set(n=250)  # five batches of 50
    sim = xn.Device("sim").backend
    sim.events.clear()
    with xn.use_device("sim"):
        _train(xn.data.Loader(x, t, batch_size=50))
    log = list(sim.events)
    uploads = [e for e in log if e[0] == "upload"]
    waits = [e for e in log if e[0] == "wait"]
    steps = [e for e in log if e[0] == "step"]
    assert len(uploads) == len(waits) == 10 and len(steps) == 5  # x and t of each batch
    for k in range(5):
        copies = {uploads[2 * k][1], uploads[2 * k + 1][1]}
        assert {waits[2 * k][1], waits[2 * k + 1][1]} == copies  # step k waits for its own batch only
        assert log.index(waits[2 * k + 1]) < log.index(steps[k])
        if k + 1 < 5:  # batch k+1's copies are issued before step k starts waiting
            assert log.index(uploads[2 * (k + 1) + 1]) < log.index(waits[2 * k])
        after = uploads[2 * k][2], uploads[2 * k + 1][2]
        assert after == ((None, None) if k < 2 else (steps[k - 2][1],) * 2)


def test_a_device_transform_runs_inside_the_step(device):
    x, t = _set()
    xd = None

    def scale(xb, tb):
        nonlocal xd
        xd = xn.device_of(xb)
        return xb * 2 - 1, tb
    _same(_train((2 * x - 1, t), epochs=2, batch_size=64, seed=3),
          _train((x, t), epochs=2, batch_size=64, seed=3, transform=scale))
    assert xd == device


def test_read_ahead_keeps_the_order_and_raises_where_the_item_would_be():
    from xpnet.data import read_ahead

    def items():
        yield from range(5)
        raise OSError("disk gone at item 5")
    got = []
    with pytest.raises(OSError, match="item 5"):
        for i in read_ahead(items(), depth=2):
            got.append(i)
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stops_its_thread_when_the_consumer_stops():
    import threading

    from xpnet.data import read_ahead
    finished = threading.Event()

    def items():
        try:
            yield from range(10**6)
        finally:
            finished.set()  # the reading thread let go of the source
    reader = read_ahead(items(), depth=2)
    assert next(reader) == 0
    reader.close()
    assert finished.is_set()


def _nan_at_mark(xb, tb):
    """fit's transform: the host data holds a finite marker (fit refuses NaN in host data up
    front), which becomes NaN on the device, inside the step, so the loss turns NaN there."""
    return xn.device_of(xb).xp.where(xb == 1e30, numpy.nan, xb), tb


@pytest.mark.parametrize("failure", ["a step", "a batch"])
def test_fit_stops_reading_ahead_when_it_fails(device, failure):
    """fit stops its read-ahead thread on an exception, raised by a step or by a batch's
    check, even while the traceback (and with it fit's frames) is kept."""
    import threading
    before = set(threading.enumerate())
    x, t = _set()
    if failure == "a step":
        x[50:] = 1e30  # NaN on the device; the loss is checked every few steps: batches are still being read
        error, match = xn.TrainingError, "the loss became nan"
    else:
        t = t.copy()
        t[170] = 9  # the model has 4 outputs: batch 17's check fails
        error, match = ValueError, "label 9"
    with pytest.raises(error, match=match) as caught:
        _train(xn.data.Loader(x, t, batch_size=10), transform=_nan_at_mark)
    assert caught.traceback  # kept, as a debugger or a log keeps it
    assert not [th for th in set(threading.enumerate()) - before if th.name == "xpnet-read-ahead"]


def test_fit_reads_a_loaders_batches_ahead_where_copies_overlap(device, monkeypatch):
    """On sim and cuda a Loader is read on a thread of its own; the result is the same."""
    import threading

    import xpnet.data
    threads, read = set(), xpnet.data.Loader.__iter__

    def spying(self):
        for batch in read(self):
            threads.add(threading.current_thread().name)
            yield batch
    monkeypatch.setattr(xpnet.data.Loader, "__iter__", spying)
    x, t = _set()
    _train(xn.data.Loader(x, t, batch_size=50))
    assert threads == ({"xpnet-read-ahead"} if device.backend.overlaps_copies else {threading.main_thread().name})
