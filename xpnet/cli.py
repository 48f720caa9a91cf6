"""``xpnet info | bench | train | export`` (also ``python -m xpnet``)."""
from __future__ import annotations

import argparse
import os
import platform
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

from .errors import DeviceError

REPO = Path(__file__).resolve().parent.parent


def info_lines() -> list:
    """What ``xpnet info`` prints: versions, BLAS, devices, and why auto picks what it picks."""
    import numpy

    from . import _launch, backends
    from ._version import __version__
    from .device import CPU, Device, auto_device_reason
    lines = [f"xpnet {__version__}, Python {platform.python_version()}, NumPy {numpy.__version__}, "
             f"{platform.machine()} {platform.processor() or ''}".rstrip()]
    for key, value in CPU.backend.describe().items():
        lines.append(f"  cpu {key}: {value}")
    lines.append(f"  cpu cores: {os.cpu_count()}")
    launch = _launch.decision()
    if launch:
        lines.append(f"  cpu threads: {launch}")
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line on stderr naming the argument and
    what to do (``prog: argument --hidden: ...; see prog --help``), with exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def _whole(text: str, low: int, why: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} {why}: give {low} or more")
    return value


def positive_int(text: str) -> int:
    """An argparse type for counts (epochs, steps, --limit): a whole number >= 1."""
    return _whole(text, 1, "is not a count")


def nonnegative_int(text: str) -> int:
    """An argparse type for seeds and offsets: a whole number >= 0."""
    return _whole(text, 0, "is negative")


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """An argparse type for rates and scales (--lr): a finite number > 0."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not positive: give a number > 0, such as 0.01")
    return value


def probability(text: str) -> float:
    """An argparse type for a share that must leave something (--dropout, --label-smoothing):
    a number from 0 up to, not including, 1."""
    value = _real(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is outside [0, 1): give a number from 0 up to "
                                         f"(not including) 1, such as 0.1")
    return value


def positive_ints(text: str) -> list:
    """An argparse type for a list of sizes separated by commas (``--hidden 100,50``)."""
    sizes = []
    for part in text.split(","):
        try:
            sizes.append(positive_int(part.strip()))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}; give whole numbers >= 1 separated by "
                                             f"commas, such as 100,50") from None
    return sizes


def _info(args) -> int:
    from .device import current_device
    print("\n".join(info_lines()))
    current_device()  # an XPNET_DEVICE that names no usable device fails here, with its reason
    return 0


def _bench(args) -> int:
    if args.speedrun:
        return _speedrun(args)
    for flag, given in (("--seeds", args.seeds), ("--device", args.device), ("--limit", args.limit)):
        if given is not None:
            args.parser.error(f"argument {flag}: for the speedrun only: add --speedrun, or drop {flag} (the "
                              f"benchmark suite picks its cases with -k and --quick)")
    suite = REPO / "bench"
    if not (suite / "conftest.py").exists():
        print(f"xpnet bench runs the suite in the repository's bench/ folder, not found at {suite}. "
              f"Clone the repository and run it from there.", file=sys.stderr)
        return 2
    out = _out_folder(args)
    if out is None:
        return 2
    print("\n".join(info_lines()), flush=True)
    raw = out / "benchmark.json"
    cmd = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={raw}", "--benchmark-columns=median,iqr,rounds",
           "--benchmark-disable-gc", f"--size={'quick' if args.quick else 'full'}"]
    if args.k:
        cmd += ["-k", args.k]
    if args.quiet:
        cmd += ["--benchmark-quiet", "-W", "ignore"]
    print("running:", shlex.join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=REPO)
    if code != 0:
        return code
    report = runpy.run_path(str(suite / "report.py"))
    # The report names the command as given (``xpnet bench -k 'matmul and 256'``) and what it ran
    command = f"{shlex.join(['xpnet', *args.argv])}   (ran: {shlex.join(cmd)})"
    return report["write_report"](raw, out, header=info_lines(), command=command)


def _out_folder(args):
    """--out as a folder (created if missing), or None after saying why it cannot be."""
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        print(f"xpnet bench --out {args.out}: that is a file; give a folder for the report "
              f"(it is created if missing).", file=sys.stderr)
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file on the way (afile/sub), no permission, a full disk
        print(f"xpnet bench --out {args.out}: cannot create that folder ({exc.strerror}: {exc.filename}); "
              f"give a folder that can be written.", file=sys.stderr)
        return None
    return out


SPEEDRUN_MIN_LIMIT = 1024  # examples/mnist_speedrun.py: 1 epoch x 1024 // 128 = its MIN_STEPS of 8


def _speedrun(args) -> int:
    """``xpnet bench --speedrun``: xpnet's and PyTorch's MNIST speedrun, seed by seed (issue 28)."""
    from . import _bench_speedrun as sr
    from .device import Device
    if args.quick or args.k:
        args.parser.error(f"argument {'--quick' if args.quick else '-k'}: not with --speedrun, which runs "
                          f"the MNIST speedrun scripts, not the benchmark suite")
    if args.limit is not None and args.limit < SPEEDRUN_MIN_LIMIT:
        args.parser.error(f"argument --limit: {args.limit} images is too few for the speedrun recipe (one epoch "
                          f"of batches of 128 and a one-cycle schedule of at least 8 steps); give "
                          f"{SPEEDRUN_MIN_LIMIT} or more")
    absent = [str(p) for p in sr.SCRIPTS.values() if not p.is_file()]
    if absent:
        print(f"xpnet bench --speedrun runs the repository's {' and '.join(absent)}: not found. Clone the "
              f"repository and run it from there.", file=sys.stderr)
        return 2
    device = Device(args.device or "cpu")  # a device that cannot be used fails here, with its reason
    out = _out_folder(args)
    if out is None:
        return 2
    quiet = args.quiet
    try:
        result = sr.speedrun(device, args.seeds or 5, args.limit, command=shlex.join(["xpnet", *args.argv]),
                             progress=(lambda line: None) if quiet else (lambda line: print(line, flush=True)))
    except sr.SpeedrunError as exc:
        print(f"xpnet bench --speedrun: {exc}", file=sys.stderr)
        return 1
    md, js, text = sr.write(result, out)
    print(text)
    print(f"wrote {md}, {js}")
    return 0


def examples() -> list:
    """The example names ``xpnet train`` runs."""
    return sorted(p.stem for p in (REPO / "examples").glob("*.py"))


def _train(args) -> int:
    if args.script is not None:
        if not args.script:
            args.parser.error("argument --script: expected the path of a script to run: "
                              "xpnet train --script PATH [ARGS]")
        script, rest = Path(args.script[0]), args.script[1:]
    elif args.name is None:
        args.parser.error(f"give an example to run, one of {', '.join(examples())} "
                          f"(or --script PATH for a script of your own)")
    elif args.name in examples():
        script, rest = REPO / "examples" / f"{args.name}.py", args.rest
    else:
        print(f"xpnet train {args.name}: not an example; the examples are {examples()}. "
              f"To run a script of your own, use xpnet train --script PATH.", file=sys.stderr)
        return 2
    if not script.is_file():
        print(f"xpnet train --script {script}: no such file.", file=sys.stderr)
        return 2
    sys.argv = [str(script)] + rest
    runpy.run_path(str(script), run_name="__main__")
    return 0


# The examples whose checkpoints ``xpnet export`` converts: each defines MODELS (key ->
# (title, builder)); the shape of one input sample, which the example's data fixes, is here.
EXPORTABLE = {"mnist_cnn": (1, 28, 28)}


def _export(args) -> int:
    """A checkpoint of an example's model as an ONNX graph (``xn.export_onnx``)."""
    import numpy

    import xpnet as xn
    where = f"xpnet export {args.checkpoint}"
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        print(f"{where}: no such file; give a checkpoint written by xn.save (an example's "
              f"--out folder holds model.npz).", file=sys.stderr)
        return 2
    if args.example not in EXPORTABLE:
        print(f"{where} --example {args.example}: not an example whose model can be rebuilt here; "
              f"give one of {', '.join(sorted(EXPORTABLE))}, or call xn.export_onnx(model, path, "
              f"example_input) on a model of your own.", file=sys.stderr)
        return 2
    models = runpy.run_path(str(REPO / "examples" / f"{args.example}.py"))["MODELS"]
    if args.model is not None and args.model not in models:
        args.parser.error(f"argument --model: {args.model!r} is not a model of {args.example}; "
                          f"give one of {', '.join(models)}")
    refusals = []
    with xn.use_device("cpu"):
        for key in [args.model] if args.model else list(models):  # the first whose weights fit
            title, build = models[key]
            model = build()
            try:
                xn.load(model, checkpoint)
                break
            except xn.CheckpointError as exc:
                refusals.append(f"{key} ({title}): {exc}")
        else:
            print(f"{where}: the checkpoint fits no model of {args.example}: {' | '.join(refusals)}",
                  file=sys.stderr)
            return 2
        out = Path(args.out) if args.out else checkpoint.with_suffix(".onnx")
        example = numpy.zeros((1, *EXPORTABLE[args.example]), dtype=numpy.float32)
        try:
            path = xn.export_onnx(model, out, example)
        except (ImportError, FileNotFoundError) as exc:
            print(f"{where}: {exc}", file=sys.stderr)
            return 2
    print(f"{checkpoint} ({title}) -> {path}: ONNX opset {xn.onnx.OPSET}, input 'input' of shape "
          f"(batch, {', '.join(map(str, example.shape[1:]))}) float32, output 'output'")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = ArgumentParser(prog="xpnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, BLAS, devices, and why auto picks what it picks")
    bench = sub.add_parser("bench", help="CPU vs GPU benchmark report (table, JSON, PNG); "
                           "--speedrun: MNIST time to accuracy against PyTorch")
    bench.add_argument("--quick", action="store_true", help="small sizes: about a minute on a CPU")
    bench.add_argument("--out", default="bench/results/latest", help="folder for JSON, table and chart")
    bench.add_argument("-k", default="", help="pytest -k expression to pick cases")
    bench.add_argument("--quiet", action="store_true", help="only the final report")
    bench.add_argument("--speedrun", action="store_true",
                       help="MNIST time to accuracy: examples/mnist_speedrun.py against bench/torch_speedrun.py")
    bench.add_argument("--seeds", type=positive_int, default=None, help="--speedrun: seeds 0..N-1 (default 5)")
    bench.add_argument("--device", default=None, help="--speedrun: the device both run on (default cpu)")
    bench.add_argument("--limit", type=positive_int, default=None,
                       help="--speedrun: the first N images of each set only (a quick check; at least "
                            "1024, which the recipe's schedule needs)")
    train = sub.add_parser("train", help="run an example: mnist_mlp, mnist_cnn, exp_regression, ...")
    train.add_argument("--script", nargs=argparse.REMAINDER, metavar="PATH [ARGS]",
                       help="run this script (with the arguments after it) instead of an example")
    train.add_argument("name", nargs="?", help=f"one of {', '.join(examples())}")
    train.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the example (--help)")
    export = sub.add_parser("export", help="an example's checkpoint as an ONNX graph (needs the onnx extra)")
    export.add_argument("checkpoint", help="a checkpoint written by xn.save (an example's model.npz)")
    export.add_argument("--example", required=True, help=f"the example that trained it: {', '.join(EXPORTABLE)}")
    export.add_argument("--model", default=None,
                        help="which of the example's models (default: the one the checkpoint fits)")
    export.add_argument("--out", default=None, help="the .onnx file to write (default: beside the checkpoint)")
    args = parser.parse_args(argv)
    args.argv, args.parser = argv, {"bench": bench, "train": train, "export": export}.get(args.command, parser)
    try:
        code = {"info": _info, "bench": _bench, "train": _train, "export": _export}[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe can be caught, not at interpreter exit
        return code
    except DeviceError as exc:
        print(f"xpnet {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``xpnet info | head -1``): not an error of ours. Point stdout
        # at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
