"""``xpnet info | bench | train`` (also ``python -m xpnet``)."""
from __future__ import annotations

import argparse
import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path

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


def _info(args) -> int:
    print("\n".join(info_lines()))
    return 0


def _bench(args) -> int:
    suite = REPO / "bench"
    if not (suite / "conftest.py").exists():
        print(f"xpnet bench runs the suite in the repository's bench/ folder, not found at {suite}. "
              f"Clone the repository and run it from there.", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
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


def _train(args) -> int:
    script = REPO / "examples" / f"{args.name}.py"
    if not script.exists():
        known = sorted(p.stem for p in (REPO / "examples").glob("*.py"))
        print(f"xpnet train {args.name}: no such example in {script.parent}; known: {known}",
              file=sys.stderr)
        return 2
    sys.argv = [str(script)] + args.rest
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
    train.add_argument("name")
    train.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the example (--help)")
    args = parser.parse_args(argv)
    return {"info": _info, "bench": _bench, "train": _train}[args.command](args)
