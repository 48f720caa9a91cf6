import importlib
import shutil

import numpy
import pytest

import xpnet as xn

mnist_module = importlib.import_module("xpnet.datasets.mnist")  # the package re-exports the function

# Label counts from ../shared/data/mnist/SOURCE.md.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.mnist
def test_mnist_shapes_dtypes_and_label_counts():
    (x, t), (xt, tt) = xn.datasets.mnist()
    assert x.shape == (60000, 784) and x.dtype == numpy.float32 and 0 <= x.min() and x.max() == 1
    assert xt.shape == (10000, 784) and t.dtype == numpy.int64
    assert numpy.bincount(t).tolist() == TRAIN_COUNTS and numpy.bincount(tt).tolist() == TEST_COUNTS


@pytest.mark.mnist
def test_mnist_as_images_raw_and_one_hot():
    (x, t), _ = xn.datasets.mnist(normalize=False, flatten=False, one_hot=True)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == numpy.uint8 and x.max() == 255
    assert t.shape == (60000, 10) and (t.sum(axis=1) == 1).all()
    assert t[:, 1].sum() == TRAIN_COUNTS[1]


def test_missing_files_without_download_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="XPNET_DATA_DIR"):
        xn.datasets.mnist(download=False)


@pytest.mark.mnist
def test_download_fetches_and_verifies(tmp_path, monkeypatch):
    source = mnist_module.data_dir().resolve()
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    mirrors = ("file:///nonexistent/", source.as_uri() + "/")  # the first mirror fails, the second works
    (x, t), _ = xn.datasets.mnist(mirrors=mirrors)
    assert x.shape == (60000, 784)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(n for n, _ in mnist_module.FILES.values())


def test_failed_download_lists_every_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="file:///a/.*file:///b/"):
        xn.datasets.mnist(mirrors=("file:///a/", "file:///b/"))
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial files left


@pytest.mark.mnist
def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_module.data_dir(), folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b tampered")
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="SHA-256"):
        xn.datasets.mnist()


def test_synthetic_sets_are_seeded():
    x1, t1 = xn.datasets.exp_regression(50, seed=0)
    x2, t2 = xn.datasets.exp_regression(50, seed=0)
    numpy.testing.assert_array_equal(x1, x2)
    numpy.testing.assert_allclose(t1, numpy.exp(x1), rtol=1e-6)
    x, t = xn.datasets.spiral(30, classes=3, seed=0)
    assert x.shape == (90, 2) and numpy.bincount(t).tolist() == [30, 30, 30]
    x, t = xn.datasets.two_moons(101, seed=0)
    assert x.shape == (101, 2) and set(t.tolist()) == {0, 1}


def _pytest_on_mnist_test(tmp_path, **env):
    """Run one MNIST test in a fresh pytest with the given environment; its summary line."""
    import os
    import subprocess
    import sys
    clean = {k: v for k, v in os.environ.items() if k != "XPNET_DATA_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/io/test_datasets.py::test_mnist_shapes_dtypes_and_label_counts"],
        capture_output=True, text=True, cwd=mnist_module.__file__.rsplit("/xpnet/", 1)[0],
        env={**clean, "HOME": str(tmp_path), **env})
    return result.returncode, result.stdout


@pytest.mark.slow
def test_mnist_tests_skip_with_the_reason_where_the_files_cannot_be_had(tmp_path):
    unreachable = "http://127.0.0.1:9"  # a closed port as the proxy: no download can succeed, here or anywhere
    code, out = _pytest_on_mnist_test(tmp_path, https_proxy=unreachable, http_proxy=unreachable)
    assert code == 0 and "1 skipped" in out and "set XPNET_DATA_DIR" in out, out[-1500:]


@pytest.mark.slow
def test_mnist_tests_fail_where_xpnet_data_dir_names_a_folder_without_them(tmp_path):
    code, out = _pytest_on_mnist_test(tmp_path, XPNET_DATA_DIR=str(tmp_path))
    assert code == 1 and "1 failed" in out, out[-1500:]


@pytest.mark.mnist
def test_decoded_files_are_kept_and_read_back_the_same(tmp_path, monkeypatch):
    """The first load keeps each checked file's decoded bytes in $XPNET_CACHE_DIR/decoded;
    the next load reads those instead of decompressing, and gives the same arrays."""
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path))
    mnist_module._parse_idx.cache_clear()
    first = xn.datasets.mnist(flatten=False)
    kept = sorted(p.name for p in (tmp_path / "decoded").iterdir())
    assert len(kept) == 4 and all(name.endswith(".npy") for name in kept)
    mnist_module._parse_idx.cache_clear()

    def no_decoding(path):
        raise AssertionError(f"decompressed {path} although its decoded copy is kept")
    monkeypatch.setattr(mnist_module, "_decode", no_decoding)
    second = xn.datasets.mnist(flatten=False)
    for pair, again in zip(first, second):
        for a, b in zip(pair, again):
            numpy.testing.assert_array_equal(a, b)
    mnist_module._parse_idx.cache_clear()


@pytest.mark.mnist
def test_a_damaged_decoded_copy_is_decoded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path))
    mnist_module._parse_idx.cache_clear()
    (x, t), _ = xn.datasets.mnist()
    mnist_module._parse_idx.cache_clear()
    images = next((tmp_path / "decoded").glob("train-images*.npy"))
    images.write_bytes(images.read_bytes()[:1000])  # cut short, as a full disk would leave it
    (x2, t2), _ = xn.datasets.mnist()
    numpy.testing.assert_array_equal(x, x2)
    assert images.stat().st_size > 47_000_000  # written again, whole
    mnist_module._parse_idx.cache_clear()
    labels = next((tmp_path / "decoded").glob("train-labels*.npy"))
    wrong = {  # whole files, but not this file's bytes (found by a hostile probe)
        images: [numpy.zeros((60000, 784), numpy.float32), numpy.zeros((100, 28, 28), numpy.uint8),
                 numpy.zeros((60000,), numpy.uint8), numpy.uint8(7)],
        labels: [numpy.zeros((60000, 28, 28), numpy.uint8), numpy.zeros((10000,), numpy.uint8)],
    }
    for kept, arrays in wrong.items():
        good = kept.read_bytes()
        for array in arrays:
            numpy.save(kept, array)
            (x3, t3), _ = xn.datasets.mnist()
            numpy.testing.assert_array_equal(x, x3)
            numpy.testing.assert_array_equal(t, t3)
            mnist_module._parse_idx.cache_clear()
        damaged = numpy.load(kept)
        damaged[-5:] ^= 1  # the header and shape intact, the last bytes not (a prober's finding, session 5)
        numpy.save(kept, damaged)
        (x3, t3), _ = xn.datasets.mnist()
        numpy.testing.assert_array_equal(x, x3)
        numpy.testing.assert_array_equal(t, t3)
        mnist_module._parse_idx.cache_clear()
        kept.write_bytes(b"PK\x03\x04 not a zip file either")  # what numpy.load takes for an .npz
        (x3, t3), _ = xn.datasets.mnist()
        numpy.testing.assert_array_equal(t, t3)
        mnist_module._parse_idx.cache_clear()
        assert kept.read_bytes() == good  # written again, whole


@pytest.mark.mnist
def test_an_unwritable_cache_only_costs_the_decoding(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XPNET_CACHE_DIR", str(blocked))
    mnist_module._parse_idx.cache_clear()
    (x, t), _ = xn.datasets.mnist()
    assert x.shape == (60000, 784) and numpy.bincount(t).tolist() == TRAIN_COUNTS
    mnist_module._parse_idx.cache_clear()
