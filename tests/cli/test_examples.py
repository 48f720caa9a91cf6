"""The examples and the command line run end to end (on small slices, on sim)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: whole examples, processes, benchmarks

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, device="sim"):
    env = {**os.environ, "XPNET_DEVICE": device, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env)


@pytest.mark.parametrize("args", [
    pytest.param(["examples/mnist_mlp.py", "--epochs", "1", "--limit", "2000", "--dropout", "0.1"],
                 marks=pytest.mark.mnist),
    pytest.param(["examples/mnist_cnn.py", "--epochs", "1", "--limit", "300"], marks=pytest.mark.mnist),
    pytest.param(["examples/mnist_cnn.py", "--model", "deep", "--epochs", "1", "--limit", "200"],
                 marks=pytest.mark.mnist),
    ["examples/exp_regression.py", "--steps", "200"],
    pytest.param(["examples/mnist_autodiff.py", "--epochs", "1"], marks=pytest.mark.mnist),
], ids=["mlp", "cnn", "deep-cnn", "regression", "autodiff"])
def test_example_runs_on_sim(args, tmp_path):
    if "--out" not in args and "autodiff" not in args[0]:
        args = args + ["--out", str(tmp_path)]
    result = _run(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sim:0:" in result.stdout


@pytest.mark.parametrize("args", [
    pytest.param(["examples/mnist_mlp.py", "--epochs", "1", "--limit", "100"], marks=pytest.mark.mnist),
    pytest.param(["examples/mnist_cnn.py", "--epochs", "1", "--limit", "100"], marks=pytest.mark.mnist),
    ["examples/exp_regression.py", "--steps", "20"],
], ids=["mlp", "cnn", "regression"])
def test_an_out_that_cannot_be_a_folder_fails_before_training(args, tmp_path):
    """A prober's finding (session 5): the examples made --out after training, so a file
    there threw the trained model away."""
    (tmp_path / "a_file").write_text("")
    result = _run(*args, "--out", str(tmp_path / "a_file"))
    assert result.returncode != 0 and "FileExistsError" in result.stderr, result.stderr[-2000:]
    assert "sim:0:" not in result.stdout  # the line each prints after training


@pytest.mark.mnist
def test_autodiff_example_prints_the_articles_check_values():
    result = _run("examples/mnist_autodiff.py", "--epochs", "1", device="cpu")
    assert "grad at 3: 40.0" in result.stdout and "partials: [36.0, 10.0]" in result.stdout
    accuracy = float(result.stdout.rsplit("test accuracy", 1)[1])
    assert accuracy > 0.9  # one epoch of the article's MLP; chance is 0.1


@pytest.mark.mnist
def test_book_inference_reads_the_books_pickle_and_converts_it(tmp_path):
    """A pickle in the book's format (random weights: accuracy near chance) round-trips."""
    import pickle

    import numpy
    rng = numpy.random.default_rng(0)
    sizes = [(784, 50), (50, 100), (100, 10)]
    book = {}
    for i, (a, b) in enumerate(sizes, 1):
        book[f"W{i}"] = rng.standard_normal((a, b)).astype(numpy.float32) * 0.1
        book[f"b{i}"] = rng.standard_normal(b).astype(numpy.float32) * 0.1
    with open(tmp_path / "sample_weight.pkl", "wb") as f:
        pickle.dump(book, f)
    first = _run("examples/book_inference.py", str(tmp_path / "sample_weight.pkl"),
                 "--save", str(tmp_path / "w.npz"))
    assert first.returncode == 0, first.stderr[-2000:]
    again = _run("examples/book_inference.py", str(tmp_path / "w.npz"), device="cpu")
    assert again.returncode == 0, again.stderr[-2000:]
    accuracy = first.stdout.split("accuracy ")[1].split()[0]
    assert "sim:0: accuracy" in first.stdout and f"cpu: accuracy {accuracy}" in again.stdout


def test_train_command_runs_an_example_by_name(tmp_path):
    result = _run("-m", "xpnet", "train", "exp_regression", "--steps", "100", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "fit.png").exists()


def test_train_command_lists_examples_for_an_unknown_name():
    result = _run("-m", "xpnet", "train", "nonexistent")
    assert result.returncode == 2 and "mnist_mlp" in result.stderr
