"""``xpnet bench --speedrun``: MNIST time to accuracy, xpnet against PyTorch (issue 28).

For each seed, ``examples/mnist_speedrun.py`` and, where PyTorch is importable,
``bench/torch_speedrun.py`` run as separate processes, one right after the other, which of
the two goes first alternating from seed to seed, so that a slow spell of a shared machine
falls on both alike. Each prints ``test accuracy 0.9882, 27.26 s`` (its seconds count from
its own process start); the report is a per-seed table, the medians, the ratio of the
median times, whether every seed reached 0.990, the machine and the command, written to
``speedrun.md`` and ``speedrun.json``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {"xpnet": REPO / "examples" / "mnist_speedrun.py", "torch": REPO / "bench" / "torch_speedrun.py"}
TARGET = 0.990  # issue 28's test accuracy
FORM = "'test accuracy A, S s' (such as 'test accuracy 0.9882, 27.26 s')"
_LINE = re.compile(r"test accuracy (\d+(?:\.\d*)?|\.\d+), (\d+(?:\.\d*)?|\.\d+) s")


class SpeedrunError(RuntimeError):
    """A run failed, or printed no result line that can be read."""


def _tail(text: str, lines: int = 15) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) if kept else "    (nothing)"


def parse_result(output: str, command: str = "the run") -> tuple:
    """(accuracy, seconds) from the last line of ``output`` that starts with ``test
    accuracy``; SpeedrunError, naming ``command`` and what it printed, where there is no such
    line or it is not of the form ``test accuracy A, S s`` with A from 0 to 1."""
    found = [line.strip() for line in output.splitlines() if line.strip().startswith("test accuracy")]
    if not found:
        raise SpeedrunError(f"{command} printed no line of the form {FORM}; its output ended with:\n"
                            f"{_tail(output)}\nA speedrun script must print that line last.")
    match = _LINE.fullmatch(found[-1])
    if match is None:
        raise SpeedrunError(f"{command} printed {found[-1]!r}, which is not of the form {FORM}: A the test "
                            f"accuracy from 0 to 1, S the seconds since its process started. Fix the line "
                            f"the script prints.")
    accuracy, seconds = float(match[1]), float(match[2])
    if accuracy > 1:
        raise SpeedrunError(f"{command} printed {found[-1]!r}: the accuracy {accuracy} is above 1; "
                            f"print it as a share (0.9882), not a percentage.")
    return accuracy, seconds


def run_script(command: list, env=None) -> tuple:
    """Run ``command`` (a list) as its own process; (accuracy, seconds) from what it printed."""
    shown = f"`{shlex.join(command)}`"
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if result.returncode != 0:
        how = (f"was killed by signal {-result.returncode}" if result.returncode < 0
               else f"failed with exit status {result.returncode}")
        raise SpeedrunError(f"{shown} {how}; its stderr ended with:\n{_tail(result.stderr)}\n"
                            f"Run that command yourself to see all of its output.")
    return parse_result(result.stdout, shown)


def torch_missing() -> str | None:
    """Why bench/torch_speedrun.py cannot run in this interpreter, or None. Found is not
    enough: a PyTorch that fails to import (a broken install, a mismatched NumPy) counts as
    missing, so it is imported, once, in a process of its own."""
    if importlib.util.find_spec("torch") is None:
        return f"PyTorch is not installed in {sys.executable} (pip install torch, or make oracles)"
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return f"PyTorch is installed in {sys.executable} but fails to import ({last})"
    return None


def _torch_device(device) -> str | None:
    return {"cpu": "cpu", "cuda": f"cuda:{device.index}"}.get(device.kind)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _load() -> list | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _median(values):
    return statistics.median(values) if values else None


def speedrun(device, seeds: int, limit=None, command: str = "", progress=print) -> dict:
    """Run the speedrun ``seeds`` times on ``device`` (an xn.Device); the results as a dict
    (what speedrun.json holds). Raises SpeedrunError where a run fails."""
    torch_device = _torch_device(device)
    missing = torch_missing() or (None if torch_device else
                                  f"PyTorch has no counterpart of {device.name} (a {device.kind} device)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    tail = ["--limit", str(limit)] if limit else []
    commands = {"xpnet": [sys.executable, str(SCRIPTS["xpnet"]), "--device", device.name],
                "torch": [sys.executable, str(SCRIPTS["torch"]), "--device", torch_device or ""]}
    impls = ["xpnet"] + ([] if missing else ["torch"])
    machine = {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "load_before": _load(),
               **{f"cpu {k}": v for k, v in _cpu_describe().items()}}
    if device.kind != "cpu":
        machine.update({f"{device.name} {k}": v for k, v in device.backend.describe().items()})
    runs = []
    for i, seed in enumerate(range(seeds)):
        run = {"seed": seed, "order": impls if i % 2 == 0 else impls[::-1]}
        for impl in run["order"]:
            cmd = commands[impl] + ["--seed", str(seed)] + tail
            accuracy, seconds = run_script(cmd, env)
            run[impl] = {"accuracy": accuracy, "seconds": seconds, "command": shlex.join(cmd)}
            progress(f"seed {seed} {impl}: test accuracy {accuracy:.4f}, {seconds:.2f} s")
        runs.append(run)
    machine["load_after"] = _load()
    medians = {impl: {"accuracy": _median([r[impl]["accuracy"] for r in runs]),
                      "seconds": _median([r[impl]["seconds"] for r in runs])} for impl in impls}
    ratio = medians["torch"]["seconds"] / medians["xpnet"]["seconds"] if "torch" in medians else None
    return {"command": command, "device": device.name, "torch_device": None if missing else torch_device,
            "torch_missing": missing, "seeds": list(range(seeds)), "limit": limit, "target": TARGET,
            "machine": machine, "runs": runs, "median": medians, "torch_over_xpnet_median_seconds": ratio,
            "every_seed_reached_target": {impl: all(r[impl]["accuracy"] >= TARGET for r in runs) for impl in impls}}


def _cpu_describe() -> dict:
    from .device import CPU
    return CPU.backend.describe()


def report_lines(result: dict) -> list:
    """speedrun.md: the Markdown report of ``speedrun``'s result."""
    m = result["machine"]
    impls = ["xpnet"] + (["torch"] if result["torch_missing"] is None else [])
    lines = ["# MNIST speedrun: xpnet against PyTorch", "", f"Command: `{result['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}; load average "
             f"(1, 5, 15 min) {_fmt_load(m['load_before'])} before, {_fmt_load(m['load_after'])} after.", ""]
    lines += [f"- {k}: {v}" for k, v in m.items() if k.startswith(("cpu ", result["device"] + " "))] + [""]
    lines.append(f"Device: xpnet {result['device']}" + (f", PyTorch {result['torch_device']}" if len(impls) > 1 else "")
                 + ". Each seed ran examples/mnist_speedrun.py and bench/torch_speedrun.py as separate processes, "
                   "one right after the other (which went first alternating from seed to seed); each printed its "
                   "test accuracy and its seconds since its process started.")
    lines.append("")
    if result["torch_missing"]:
        lines += [f"PyTorch not run: {result['torch_missing']}; xpnet column only.", ""]
    if result["limit"]:
        lines += [f"--limit {result['limit']}: trained and tested on the first {result['limit']} images of each "
                  f"set, a quick check of the command, not the speedrun.", ""]
    head = [f"{impl} {what}" for impl in impls for what in ("accuracy", "s")]
    lines += ["| seed | " + " | ".join(head) + " |", "|" + " --- |" * (1 + len(head))]
    for run in result["runs"]:
        cells = [f"{run[i]['accuracy']:.4f} | {run[i]['seconds']:.2f}" for i in impls]
        lines.append(f"| {run['seed']} | " + " | ".join(cells) + " |")
    med = result["median"]
    lines.append("| median | " + " | ".join(f"{med[i]['accuracy']:.4f} | {med[i]['seconds']:.2f}" for i in impls)
                 + " |")
    lines.append("")
    if result["torch_over_xpnet_median_seconds"] is not None:
        ratio = result["torch_over_xpnet_median_seconds"]
        lines += [f"Ratio of the median times, torch / xpnet: {ratio:.2f} "
                  f"({'xpnet is faster' if ratio > 1 else 'PyTorch is faster' if ratio < 1 else 'even'}).", ""]
    reached = []
    for impl in impls:
        short = [f"seed {r['seed']}: {r[impl]['accuracy']:.4f}" for r in result["runs"]
                 if r[impl]["accuracy"] < result["target"]]
        reached.append(f"{impl} yes" if not short else f"{impl} no ({', '.join(short)})")
    lines += [f"Every seed reached {result['target']:.3f}: {'; '.join(reached)}.", ""]
    return lines


def _fmt_load(load) -> str:
    return ", ".join(f"{v:.2f}" for v in load) if load else "unknown"


def write(result: dict, out: Path) -> tuple:
    """Write speedrun.md and speedrun.json to the folder ``out``; (md path, json path, text)."""
    text = "\n".join(report_lines(result))
    md, js = out / "speedrun.md", out / "speedrun.json"
    md.write_text(text)
    js.write_text(json.dumps(result, indent=2) + "\n")
    return md, js, text
