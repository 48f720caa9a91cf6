"""Turn a pytest-benchmark JSON into the CPU-vs-GPU report: a Markdown table per case,
the GPU/CPU speedup and break-even size, reference ratios, and a log-log PNG chart.

    python bench/report.py RESULTS.json OUT_DIR      (xpnet bench calls write_report)
"""
import json
import sys
from collections import defaultdict
from pathlib import Path


def _fmt_time(s):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _fmt_size(case, n):
    if case.startswith("copy"):
        for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
            if n >= scale:
                return f"{n / scale:g} {unit}"
    return f"{n:,}"


def _rate(row):
    median = row["median"]
    if row["flop"]:
        return f"{row['flop'] / median / 1e9:,.1f} GFLOP/s"
    if row["nbytes"]:
        return f"{row['nbytes'] / median / 1e9:,.2f} GB/s"
    return ""


def load_rows(path):
    data = json.loads(Path(path).read_text())
    rows = []
    for b in data["benchmarks"]:
        info = b["extra_info"]
        rows.append({"case": info["case"], "size": info["size"], "device": info["device"],
                     "impl": info.get("impl", "xpnet"), "kernels": info.get("kernels"), "flop": info.get("flop"),
                     "nbytes": info.get("nbytes"), "median": b["stats"]["median"],
                     "iqr": b["stats"]["iqr"], "rounds": b["stats"]["rounds"]})
    return data, rows


KERNEL_LABELS = {"on": "kernels", "off": "NumPy only"}  # bench/conftest.py's kernel modes
RATIO_HEAD = "NumPy only / kernels (time)"


def _head(column, has_ref):
    device, impl, kernels = column
    name = f"{device} {impl}" if has_ref else device
    return f"{name}, {KERNEL_LABELS[kernels]}" if kernels in KERNEL_LABELS else name


def tables(rows):
    """Markdown lines: one table per case, columns per (device, implementation, kernel mode),
    with the GPU/CPU speedup, the cpu kernels' ratio (NumPy only / kernels) and each
    reference's time against xpnet's."""
    by_case = defaultdict(list)
    for r in rows:
        by_case[r["case"]].append(r)
    lines = []
    for case, items in by_case.items():
        impls = {r["impl"] for r in items}
        base_impl = next((i for i in ("xpnet", "backward") if i in impls), min(impls))
        mode_order = {"on": 0, None: 0, "off": 1}
        columns = sorted({(r["device"], r["impl"], r.get("kernels")) for r in items},
                         key=lambda c: (c[0] != "cpu", c[0], c[1] != base_impl, c[1], mode_order.get(c[2], 2)))
        cell = {(r["size"], r["device"], r["impl"], r.get("kernels")): r for r in items}
        has_ref = len(impls) > 1
        head = [_head(c, has_ref) for c in columns]

        def base(device):  # the column others are divided by: kernels on where they ran
            return next((c for k in ("on", None, "off") for c in columns if c == (device, base_impl, k)), None)
        # (device, impl) timed with the kernels and without: the kernels' ratio column
        paired = [(d, i) for d, i, k in columns if k == "on" and (d, i, "off") in columns]
        # the others against the base, per device (a NumPy-only column that has a kernels partner is in
        # the kernels' ratio instead)
        compared = [c for c in columns if not (c[2] == "off" and (c[0], c[1]) in paired)]
        ratio_devices = [d for d in dict.fromkeys(d for d, _, _ in compared)
                         if sum(1 for c in compared if c[0] == d) > 1 and base(d)]
        cpu_base, gpu_base = base("cpu"), base("cuda:0")
        has_gpu = cpu_base is not None and gpu_base is not None
        extra = ((["GPU/CPU speedup"] if has_gpu else []) + ([RATIO_HEAD] if paired else [])
                 + [f"time / {base_impl} ({d})" for d in ratio_devices])
        lines += [f"### {case}", "", "| size | " + " | ".join(head + extra) + " |",
                  "|" + " --- |" * (1 + len(head) + len(extra))]
        breakeven = None
        for size in sorted({r["size"] for r in items}):
            row = [_fmt_size(case, size)]
            for c in columns:
                r = cell.get((size, *c))
                row.append("" if r is None else f"{_fmt_time(r['median'])} {_rate(r)}".strip())
            if has_gpu:
                cpu, gpu = cell.get((size, *cpu_base)), cell.get((size, *gpu_base))
                speedup = cpu["median"] / gpu["median"] if cpu and gpu else None
                row.append(f"{speedup:.2f}x" if speedup else "")
                if speedup and speedup > 1 and breakeven is None:
                    breakeven = size
            if paired:
                ratios = [(i, cell[(size, d, i, "off")]["median"] / cell[(size, d, i, "on")]["median"])
                          for d, i in paired if (size, d, i, "on") in cell and (size, d, i, "off") in cell]
                row.append(", ".join(f"{i}: {v:.2f}" if len(paired) > 1 else f"{v:.2f}" for i, v in ratios))
            for device in ratio_devices:
                b = cell.get((size, *base(device)))
                ratios = [f"{i}: {cell[(size, d, i, k)]['median'] / b['median']:.2f}"
                          for d, i, k in compared if d == device and (d, i, k) != base(device) and b
                          and (size, d, i, k) in cell]
                row.append(", ".join(ratios))
            lines.append("| " + " | ".join(row) + " |")
        if has_gpu:
            lines.append("")
            lines.append(f"GPU wins from size {_fmt_size(case, breakeven)}." if breakeven is not None
                         else "The GPU did not win at any size measured.")
        lines.append("")
    return lines


def kernels_line(data, rows):
    """One line on the cpu kernels (bench/conftest.py records whether they ran, and why),
    or None for a run without cpu cases or from before the kernels were recorded."""
    state = data.get("machine_info", {}).get("xpnet_cpu_kernels")
    if not state or not any(r["device"] == "cpu" for r in rows):
        return None
    if state["on"]:
        return (f"cpu kernels {state['why']}. The cpu training steps ran twice, back to back: with the "
                f"kernels and NumPy only (`jit.off()`); \"{RATIO_HEAD}\" divides their times.")
    return f"cpu kernels {state['why']}. The cpu columns are NumPy only."


def chart(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cases = [c for c in dict.fromkeys(r["case"] for r in rows)
             if len({r["size"] for r in rows if r["case"] == c}) > 1]
    if not cases:
        return None
    cols = min(3, len(cases))
    nrows = -(-len(cases) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for ax, case in zip(axes.flat, cases):
        series = defaultdict(list)
        for r in rows:
            if r["case"] == case:
                series[(r["device"], r["impl"], r.get("kernels"))].append((r["size"], r["median"]))
        several = len({impl for _, impl, _ in series}) > 1
        for column, pts in sorted(series.items(), key=lambda item: tuple(map(str, item[0]))):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=_head(column, several))
        ax.set(xscale="log", yscale="log", title=case, xlabel="size", ylabel="median time (s)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def launch_table():
    """Kernel launches per training step, counted on sim (bench/launches.py)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from launches import MODELS, count
    lines = ["## Kernel launches per training step (counted on sim, batch 100)", "",
             "| model | launches a step, kernel by kernel | launches a step, recorded (kernels) |",
             "| --- | --- | --- |"]
    for name in MODELS:
        eager, replay, why = count(name)
        recorded = f"{replay.launches} ({replay.kernels})" if replay else f"not recordable: {why}"
        lines.append(f"| {name} | {eager} | {recorded} |")
    return lines + [""]


def write_report(raw, out, header=(), command=None):
    """Write report.md (and chart.png) to ``out`` from the pytest-benchmark JSON ``raw``.
    ``command``: the command line that ran the benchmarks, as the report should name it."""
    out = Path(out)
    data, rows = load_rows(raw)
    machine = data.get("machine_info", {})
    if command is None:  # called on its own: what made the JSON is not known here
        command = f"not recorded: report made by bench/report.py from {raw}"
    lines = ["# xpnet benchmark report", "", f"Command: `{command}`", "",
             f"Date: {data.get('datetime', '?')}; CPU: {machine.get('cpu', {}).get('brand_raw', '?')}", "",
             "```", *header, "```", "",
             "Median wall time of a call that ends with a device synchronize, after warm-up. "
             "Rates are work divided by that median.", ""]
    devices = sorted({r["device"] for r in rows})
    if not any(d.startswith("cuda") for d in devices):
        lines += ["No CUDA GPU was found: this report shows the CPU alone.", ""]
    kernels = kernels_line(data, rows)
    if kernels:
        lines += [kernels, ""]
    lines += tables(rows)
    lines += launch_table()
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    png = chart(rows, out / "chart.png")
    print(text)
    print(f"\nwrote {out / 'report.md'}, {raw}" + (f", {png}" if png else ""))
    return 0


def _repeat_name(row):
    """An implementation's name in repeat_table: xpnet's NumPy-only runs as "xpnet-numpy"."""
    return f"{row['impl']}-numpy" if row.get("kernels") == "off" else row["impl"]


def repeat_table(paths, case, base=None):
    """Markdown: for each run (JSON file), each size's time ratio of every implementation
    to ``base``, then the median over runs. For noisy shared machines, where one run's
    ratio can be off by 20%."""
    import statistics
    per = defaultdict(list)
    impls = set()
    for path in paths:
        _, rows = load_rows(path)
        if base is None:
            present = {_repeat_name(r) for r in rows if r["case"] == case}
            base = next((b for b in ("xpnet", "backward", "xpnet-numpy", "backward-numpy") if b in present), None)
        cell = {(r["size"], _repeat_name(r)): r["median"] for r in rows if r["case"] == case and r["device"] == "cpu"}
        for (size, impl), t in cell.items():
            if impl != base and (size, base) in cell:
                per[(size, impl)].append(t / cell[(size, base)])
                impls.add(impl)
    impls = sorted(impls)
    lines = ["| size | " + " | ".join(f"{i} / {base}, each run" for i in impls) + " | "
             + " | ".join(f"{i} / {base}, median" for i in impls) + " |",
             "|" + " --- |" * (1 + 2 * len(impls))]
    for size in sorted({s for s, _ in per}):
        runs = [", ".join(f"{v:.2f}" for v in per[(size, i)]) for i in impls]
        medians = [f"{statistics.median(per[(size, i)]):.2f}" if per[(size, i)] else "" for i in impls]
        lines.append(f"| {size} | " + " | ".join(runs + medians) + " |")
    return lines


if __name__ == "__main__":
    if sys.argv[1] == "--repeat":  # report.py --repeat CASE RUN1.json RUN2.json ...
        print("\n".join(repeat_table(sys.argv[3:], sys.argv[2])))
        sys.exit(0)
    sys.exit(write_report(sys.argv[1], sys.argv[2]))
