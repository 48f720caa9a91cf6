"""``xpnet info | bench | train`` (also ``python -m xpnet``)."""
from __future__ import annotations

import argparse
import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path

from .errors import DeviceError

REPO = Path(__file__).resolve().parent.parent


def info_lines() -> list:
    """What ``xpnet info`` prints: versions, BLAS, devices, and why auto picks what it picks."""
    import numpy

    from . import __version__, backends
    from .device import CPU, Device, auto_device_reason
    lines = [f"xpnet {__version__}, Python {platform.python_version()}, NumPy {numpy.__version__}, "
             f"{platform.machine()} {platform.processor() or ''}".rstrip()]
    for key, value in CPU.backend.describe().items():
        lines.append(f"  cpu {key}: {value}")
    lines.append(f"  cpu cores: {os.cpu_count()}")
    names = backends.cuda_device_names()
    reason = backends.cuda_unavailable_reason()
    if reason:
        lines.append(f"CUDA: not usable: {reason}")
    for i, _ in enumerate(names):
        lines.append(f"cuda:{i}")
        for key, value in Device(f"cuda:{i}").backend.describe().items():
            lines.append(f"  {key}: {value}")
    devices = ["cpu", "sim:0"] + [f"cuda:{i}" for i in range(len(names))]
    lines.append(f"devices: {', '.join(devices)}")
    env = os.environ.get("XPNET_DEVICE")
    lines.append(f"XPNET_DEVICE: {env!r}" if env else f"XPNET_DEVICE: unset; {auto_device_reason()}")
    return lines


def positive_int(text: str) -> int:
    """An argparse type for counts (epochs, steps, --limit): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count: give 1 or more")
    return value


def _info(args) -> int:
    from .device import current_device
    print("\n".join(info_lines()))
    current_device()  # an XPNET_DEVICE that names no usable device fails here, with its reason
    return 0


def _bench(args) -> int:
    suite = REPO / "bench"
    if not (suite / "conftest.py").exists():
        print(f"xpnet bench runs the suite in the repository's bench/ folder, not found at {suite}. "
              f"Clone the repository and run it from there.", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        print(f"xpnet bench --out {args.out}: that is a file; give a folder for the report "
              f"(it is created if missing).", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    print("\n".join(info_lines()), flush=True)
    raw = out / "benchmark.json"
    cmd = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={raw}", "--benchmark-columns=median,iqr,rounds",
           "--benchmark-disable-gc", f"--size={'quick' if args.quick else 'full'}"]
    if args.k:
        cmd += ["-k", args.k]
    print("running:", " ".join(cmd), flush=True)
    code = subprocess.call(cmd + ["--benchmark-quiet", "-W", "ignore"] if args.quiet else cmd, cwd=REPO)
    if code != 0:
        return code
    report = runpy.run_path(str(suite / "report.py"))
    return report["write_report"](raw, out, header=info_lines())


def examples() -> list:
    """The example names ``xpnet train`` runs."""
    return sorted(p.stem for p in (REPO / "examples").glob("*.py"))


def _train(args) -> int:
    if args.script:
        script, rest = Path(args.script[0]), args.script[1:]
    elif args.name in examples():
        script, rest = REPO / "examples" / f"{args.name}.py", args.rest
    else:
        print(f"xpnet train {args.name or ''}: not an example; the examples are {examples()}. "
              f"To run a script of your own, use xpnet train --script PATH.", file=sys.stderr)
        return 2
    if not script.is_file():
        print(f"xpnet train --script {script}: no such file.", file=sys.stderr)
        return 2
    sys.argv = [str(script)] + rest
    runpy.run_path(str(script), run_name="__main__")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, BLAS, devices, and why auto picks what it picks")
    bench = sub.add_parser("bench", help="CPU vs GPU benchmark report (table, JSON, PNG)")
    bench.add_argument("--quick", action="store_true", help="small sizes: about a minute on a CPU")
    bench.add_argument("--out", default="bench/results/latest", help="folder for JSON, table and chart")
    bench.add_argument("-k", default="", help="pytest -k expression to pick cases")
    bench.add_argument("--quiet", action="store_true", help="only the final report")
    train = sub.add_parser("train", help="run an example: mnist_mlp, mnist_cnn, exp_regression, ...")
    train.add_argument("--script", nargs=argparse.REMAINDER, metavar="PATH [ARGS]",
                       help="run this script (with the arguments after it) instead of an example")
    train.add_argument("name", nargs="?", help=f"one of {', '.join(examples())}")
    train.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the example (--help)")
    args = parser.parse_args(argv)
    try:
        return {"info": _info, "bench": _bench, "train": _train}[args.command](args)
    except DeviceError as exc:
        print(f"xpnet {args.command}: {exc}", file=sys.stderr)
        return 2
