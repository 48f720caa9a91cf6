"""``xpnet bench`` with the cpu kernels on and off (issue 26) and ``xpnet bench --speedrun``
(issue 28): the result line's parser, a failing run's message, the report's columns and
figures, and, marked slow, both commands end to end on small selections."""
import importlib.util
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from xpnet import _bench_speedrun as sr
from xpnet import cli
from xpnet.backends import jit

ROOT = Path(__file__).resolve().parents[2]
REPORT = runpy.run_path(str(ROOT / "bench" / "report.py"))
# A slice both speedrun scripts train on (one epoch of 8 steps of 128, the least the example's
# one-cycle schedule takes; below it the example refuses to start).
LIMIT = "1100"


def _xpnet(*args, env=None):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    env.pop("XPNET_DEVICE", None)
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, cwd=ROOT, env=env)


# -- the speedrun's result line ---------------------------------------------------------------

def test_the_result_line_is_read_from_the_last_such_line():
    out = "loading MNIST\ntest accuracy 0.5000, 1.00 s\nepoch 1\ntest accuracy 0.9882, 27.26 s\n"
    assert sr.parse_result(out) == (0.9882, 27.26)


@pytest.mark.parametrize("line", ["test accuracy 98.8%, 27.26 s", "test accuracy 0.9882", "test accuracy nan, 3.1 s",
                                  "test accuracy 0.9882, 27.26", "test accuracy 0.9882, -1 s"])
def test_a_malformed_result_line_is_named_with_the_form_expected(line):
    with pytest.raises(sr.SpeedrunError) as caught:
        sr.parse_result(f"epoch 1\n{line}\n", "`python examples/mnist_speedrun.py --seed 3`")
    message = str(caught.value)
    assert repr(line) in message and "test accuracy A, S s" in message, message
    assert "`python examples/mnist_speedrun.py --seed 3`" in message, message


def test_an_accuracy_given_as_a_percentage_is_refused():
    with pytest.raises(sr.SpeedrunError, match="above 1.*share"):
        sr.parse_result("test accuracy 98.82, 27.26 s\n", "`run`")


def test_output_without_a_result_line_is_an_error_that_shows_the_output():
    with pytest.raises(sr.SpeedrunError) as caught:
        sr.parse_result("epoch 1: loss 2.30\nsaved model.npz\n", "`run`")
    message = str(caught.value)
    assert "`run` printed no line of the form 'test accuracy A, S s'" in message, message
    assert "saved model.npz" in message, message


def test_a_failing_run_names_its_command_exit_status_and_stderr():
    command = [sys.executable, "-c", "import sys; print('test accuracy 0.9, 1.0 s'); "
                                     "sys.stderr.write('FileNotFoundError: no MNIST here\\n'); sys.exit(3)"]
    with pytest.raises(sr.SpeedrunError) as caught:
        sr.run_script(command)
    message = str(caught.value)
    assert "exit status 3" in message and "FileNotFoundError: no MNIST here" in message, message
    assert sys.executable in message and "sys.exit(3)" in message, message


# -- the speedrun's report, from runs made up here ---------------------------------------------

_MADE_UP = {("xpnet", 0): (0.9912, 3.0), ("torch", 0): (0.9921, 6.0), ("xpnet", 1): (0.9871, 5.0),
            ("torch", 1): (0.9905, 4.0), ("xpnet", 2): (0.9930, 4.0), ("torch", 2): (0.9902, 5.0)}


def _fake_runs(monkeypatch, missing=None):
    ran = []

    def run_script(command, env=None):
        impl = "torch" if command[1].endswith("torch_speedrun.py") else "xpnet"
        seed = int(command[command.index("--seed") + 1])
        ran.append((impl, seed, command))
        return _MADE_UP[(impl, seed)]
    monkeypatch.setattr(sr, "run_script", run_script)
    monkeypatch.setattr(sr, "torch_missing", lambda: missing)
    return ran


def test_the_speedrun_alternates_and_reports_medians_ratio_and_target(monkeypatch, tmp_path, capsys):
    ran = _fake_runs(monkeypatch)
    assert cli.main(["bench", "--speedrun", "--seeds", "3", "--limit", "1100", "--out", str(tmp_path)]) == 0
    # seed by seed, which goes first alternating; --limit and the device passed to both
    assert [(i, s) for i, s, _ in ran] == [("xpnet", 0), ("torch", 0), ("torch", 1), ("xpnet", 1),
                                           ("xpnet", 2), ("torch", 2)]
    assert all(c[-2:] == ["--limit", "1100"] and c[c.index("--device") + 1] == "cpu" for _, _, c in ran)
    result = json.loads((tmp_path / "speedrun.json").read_text())
    assert result["median"] == {"xpnet": {"accuracy": 0.9912, "seconds": 4.0},
                                "torch": {"accuracy": 0.9905, "seconds": 5.0}}
    assert result["torch_over_xpnet_median_seconds"] == pytest.approx(1.25)
    assert result["every_seed_reached_target"] == {"xpnet": False, "torch": True}
    assert len(result["machine"]["load_before"]) == 3 and len(result["machine"]["load_after"]) == 3
    text = (tmp_path / "speedrun.md").read_text()
    assert "| seed | xpnet accuracy | xpnet s | torch accuracy | torch s |" in text
    assert "| 1 | 0.9871 | 5.00 | 0.9905 | 4.00 |" in text
    assert "| median | 0.9912 | 4.00 | 0.9905 | 5.00 |" in text
    assert "torch / xpnet: 1.25 (xpnet is faster)" in text
    assert "Every seed reached 0.990: xpnet no (seed 1: 0.9871); torch yes." in text
    assert "Command: `xpnet bench --speedrun --seeds 3 --limit 1100" in text and "load average" in text
    assert "| median | 0.9912 | 4.00 | 0.9905 | 5.00 |" in capsys.readouterr().out  # the table is printed


def test_without_torch_the_speedrun_says_so_once_and_shows_xpnet_only(monkeypatch, tmp_path, capsys):
    ran = _fake_runs(monkeypatch, missing="PyTorch is not installed in python")
    assert cli.main(["bench", "--speedrun", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert [i for i, _, _ in ran] == ["xpnet", "xpnet"]
    text = (tmp_path / "speedrun.md").read_text()
    assert text.count("PyTorch not run: PyTorch is not installed in python; xpnet column only.") == 1
    assert "| seed | xpnet accuracy | xpnet s |\n" in text and "torch s" not in text
    result = json.loads((tmp_path / "speedrun.json").read_text())
    assert result["torch_over_xpnet_median_seconds"] is None and "torch" not in result["runs"][0]


def test_a_failing_run_stops_the_speedrun_with_its_message(monkeypatch, tmp_path, capsys):
    def run_script(command, env=None):
        raise sr.SpeedrunError("`python x.py` failed with exit status 1; its stderr ended with: boom")
    monkeypatch.setattr(sr, "run_script", run_script)
    assert cli.main(["bench", "--speedrun", "--seeds", "1", "--out", str(tmp_path)]) == 1
    assert "xpnet bench --speedrun: `python x.py` failed" in capsys.readouterr().err
    assert not (tmp_path / "speedrun.json").exists()


@pytest.mark.parametrize("args, named", [(["--seeds", "2"], "--seeds"), (["--limit", "700"], "--limit"),
                                         (["--speedrun", "-k", "mlp"], "-k"), (["--speedrun", "--quick"], "--quick"),
                                         (["--speedrun", "--seeds", "0"], "--seeds")])
def test_speedrun_usage_errors_name_the_argument(args, named, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["bench", *args])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}" in err and "see xpnet bench --help" in err, err


# -- the benchmark report with the cpu kernels on and off --------------------------------------

def _row(impl, kernels, median, size=32, device="cpu"):
    return {"case": "MLP step", "size": size, "device": device, "impl": impl, "kernels": kernels,
            "flop": None, "nbytes": None, "median": median, "iqr": 0.0, "rounds": 5}


def test_the_report_sets_kernels_and_numpy_only_side_by_side_with_their_ratio():
    rows = [_row("xpnet", "on", 2e-4), _row("xpnet", "off", 5e-4), _row("torch", None, 4e-4),
            _row("xpnet", None, 1e-4, device="cuda:0")]
    lines = REPORT["tables"](rows)
    assert ("| size | cpu xpnet, kernels | cpu xpnet, NumPy only | cpu torch | cuda:0 xpnet | GPU/CPU speedup | "
            "NumPy only / kernels (time) | time / xpnet (cpu) |") in lines
    # the GPU and torch are set against the kernels' time; NumPy only against the kernels
    assert "| 32 | 200 us | 500 us | 400 us | 100 us | 2.00x | 2.50 | torch: 2.00 |" in lines


def test_without_kernels_the_report_says_so_in_one_line_and_shows_numpy_only():
    rows = [_row("xpnet", "off", 5e-4)]
    data = {"machine_info": {"xpnet_cpu_kernels": {"on": False, "why": "off: numba is not installed"}}}
    line = REPORT["kernels_line"](data, rows)
    assert line == "cpu kernels off: numba is not installed. The cpu columns are NumPy only."
    lines = REPORT["tables"](rows)
    assert "| size | cpu, NumPy only |" in lines and not any("kernels" in line for line in lines)


def test_a_report_from_before_the_kernel_modes_is_unchanged():
    rows = [_row("xpnet", None, 2e-4), _row("torch", None, 4e-4)]
    assert "| size | cpu xpnet | cpu torch | time / xpnet (cpu) |" in REPORT["tables"](rows)
    assert REPORT["kernels_line"]({}, rows) is None


def _bench_run(tmp_path, env=None):
    result = _xpnet("bench", "--quick", "--quiet", "-k", "test_mlp_step and not references and cpu-32-",
                    "--out", str(tmp_path), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    raw = json.loads((tmp_path / "benchmark.json").read_text())
    return (tmp_path / "report.md").read_text(), raw


@pytest.mark.slow
def test_bench_times_the_cpu_step_with_and_without_kernels(tmp_path):
    text, raw = _bench_run(tmp_path)
    modes = sorted((b["extra_info"]["kernels"], b["extra_info"]["size"]) for b in raw["benchmarks"])
    if jit.status()[0]:
        assert modes == [("off", 32), ("on", 32)]
        assert "| size | cpu, kernels | cpu, NumPy only | NumPy only / kernels (time) |" in text, text
        row = next(line for line in text.splitlines() if line.startswith("| 32 |"))
        assert float(row.split("|")[-2]) > 0, row
    else:  # numba is not installed here: the NumPy case alone, and the line saying why
        assert modes == [("off", 32)] and "The cpu columns are NumPy only." in text, text


@pytest.mark.slow
def test_bench_with_kernels_off_shows_numpy_only_and_says_why(tmp_path):
    text, raw = _bench_run(tmp_path, env={"XPNET_JIT": "0"})
    assert [b["extra_info"]["kernels"] for b in raw["benchmarks"]] == ["off"]
    assert raw["machine_info"]["xpnet_cpu_kernels"]["on"] is False
    assert ("cpu kernels off: XPNET_JIT='0' (every routine runs its NumPy version). "
            "The cpu columns are NumPy only.") in text
    assert "| size | cpu, NumPy only |" in text and "cpu, kernels" not in text and "NumPy only / kernels" not in text


# -- the speedrun end to end --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.mnist
def test_speedrun_two_seeds_end_to_end(tmp_path):
    result = _xpnet("bench", "--speedrun", "--seeds", "2", "--limit", LIMIT, "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "speedrun.json").read_text())
    has_torch = importlib.util.find_spec("torch") is not None
    impls = ["xpnet", "torch"] if has_torch else ["xpnet"]
    assert [r["seed"] for r in report["runs"]] == [0, 1]
    assert [r["order"] for r in report["runs"]] == [impls, impls[::-1]]
    for run in report["runs"]:
        for impl in impls:
            assert 0 <= run[impl]["accuracy"] <= 1 and run[impl]["seconds"] > 0, run
            assert f"--seed {run['seed']} --limit {LIMIT}" in run[impl]["command"], run
    assert (report["torch_missing"] is None) == has_torch
    text = (tmp_path / "speedrun.md").read_text()
    head = "| seed | xpnet accuracy | xpnet s |" + (" torch accuracy | torch s |" if has_torch else "")
    assert head in text and "| median |" in text and "Every seed reached 0.990:" in text, text
    assert head in result.stdout


def test_a_torch_that_fails_to_import_counts_as_missing(tmp_path, monkeypatch):
    """Found by find_spec is not importable: a broken PyTorch leaves the xpnet column alone
    instead of stopping the speedrun at its first torch run."""
    shim = tmp_path / "torch"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise ImportError('this torch is broken on purpose')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(sr.importlib.util, "find_spec", lambda name: object())  # "installed"
    why = sr.torch_missing()
    assert why is not None and "fails to import" in why and "broken on purpose" in why


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_out_folder_that_cannot_be_made_is_named_in_one_line(tmp_path, capsys, where):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    out = blocker if where == "a file" else blocker / "sub"
    assert cli.main(["bench", "--speedrun", "--seeds", "1", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "folder" in err and "Traceback" not in err


def test_a_limit_too_small_for_the_speedrun_recipe_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--speedrun", "--seeds", "1", "--limit", "300"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--limit: 300 images is too few" in err and "1024" in err
