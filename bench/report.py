"""Write ``bench/results.md`` (the machine, the date, how to run the suite, and the table of one
run) and ``bench/derive_depth.png`` (derivation time against depth):

    python -m bench.report [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

import torch

from .__main__ import run, table
from .layers import MISSING
from .timing import ROOT, steady_allocator

HEADER = """# Benchmark results

How to run: `python -m bench` (full, several minutes), `python -m bench --quick` (small shapes,
fewer repetitions, under two minutes; `tests/test_bench.py` runs it), `--json` for the rows as
JSON, `--only WORD` for the cases whose label has WORD; `python -m bench.report` reruns everything
and rewrites this file and `derive_depth.png`.

Every row is measured in one process with `torch.set_num_threads(1)`: the generated code and the
baseline run alternately (the first of each pair alternates too), and `ratio` is the median of the
per-pair ratios generated / baseline, so lower is better and below 1 means the generated code is
faster. The generated modules are read from `generated/` as they are at run time. Derivation rows
time cold runs (SymPy's cache cleared; derive: the median of three, derive + emit: one) and
compare with the baseline named in the row: the same program at half the depth or length (linear
scaling gives 2.0), a time budget, or SymPy's `diff`. The machine is shared with other work, so
single rows move by tens of percent between runs; compare ratios, not seconds. Rows named `bytes
allocated` (`bench/memory.py`) count the bytes of every tensor an operator returns in fresh
storage during one call (autograd's backward included; a kernel's internal scratch is not seen,
which favours the fused library kernels): exact, and independent of the machine's load. The
suite first asks glibc's allocator to keep freed large blocks (`bench.timing.steady_allocator`),
as a training loop's allocator settles: otherwise whether a large result lands on fresh pages
depends on what was freed last, and a row swings by a factor of four between runs.
"""


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    return (f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{'glibc allocator kept steady' if steady_allocator() else 'default allocator'}; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.")


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for case, label in (("derive+emit tanh+batchnorm MLP", "derive + emit"),
                        ("derive tanh+batchnorm MLP", "derive")):
        points = sorted((int(r.shape.split("=")[1].split()[0]), r.generated_s)
                        for r in rows if r.case == case and r.generated_s is not None)
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth (tanh + batchnorm layers)")
    ax.set_ylabel("seconds")
    ax.set_title("symderive: derivation time against depth")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _pick(rows, case: str, shape: str = "", baseline: str = "") -> list:
    return [r for r in rows if r.case.startswith(case) and shape in r.shape
            and r.baseline.startswith(baseline) and r.ratio is not None
            and r.generated_bytes is None]  # the goals are times; memory rows are listed


def goals(rows) -> str:
    """Issue 11's goals, each with the measured ratio (the worst where several rows count)."""
    checks = [
        ("batchnorm backward <= 1.5x ATen's fused kernel at 4096x1024 (biased)", 1.5,
         _pick(rows, "batchnorm backward (biased) torch", "4096x1024", "ATen")),
        ("batchnorm backward <= 1.0x the hand-written fewer-pass torch form, every shape", 1.0,
         _pick(rows, "batchnorm backward (b", "", "hand-written fewer-pass")),
        ("generated compiled() backward <= 1.0x ATen's fused kernel at 4096x1024", 1.0,
         _pick(rows, "batchnorm backward (biased) torch, generated compiled()", "4096x1024",
               "ATen")),
        ("NumPy batchnorm backward <= 1.0x hand-written NumPy with out=", 1.0,
         _pick(rows, "batchnorm backward (bessel) numpy", "", "hand-written numpy")),
        ("cross-entropy forward+backward <= 1.0x F.cross_entropy + autograd (4096x1000)", 1.0,
         _pick(rows, "cross-entropy", "4096x1000")),
        ("cross-entropy forward+backward <= 1.0x F.cross_entropy + autograd (512x32000)", 1.0,
         _pick(rows, "cross-entropy", "512x32000")),
        ("makemore step <= 0.6x the autograd step", 0.6, _pick(rows, "makemore")),
        ("derive + emit time(16)/time(8) <= 2.2", 2.2,
         _pick(rows, "derive+emit tanh+batchnorm MLP", "depth=16")),
        ("derive time(16)/time(8) <= 2.2 (the deriver alone)", 2.2,
         _pick(rows, "derive tanh+batchnorm MLP", "depth=16")),
        ("300-statement tanh chain derived and emitted in under 10 s", 1.0,
         _pick(rows, "derive+emit tanh chain", "300", "10 s")),
        ("300-statement tanh chain derived in under 10 s (the deriver alone)", 1.0,
         _pick(rows, "derive tanh chain", "300", "10 s")),
        ("every derivation file derived in under 1 s (issue 10)", 1.0,
         _pick(rows, "derive ", "", "1 s budget (issue 10)")),
    ]
    lines = ["| goal | measured (worst) | met |", "|---|---|---|"]
    for goal, limit, found in checks:
        if not found:
            lines.append(f"| {goal} | not measured | - |")
            continue
        worst = max(found, key=lambda r: r.ratio)
        lines.append(f"| {goal} | {worst.ratio:.2f} ({worst.case}, {worst.shape}) | "
                     f"{'yes' if worst.ratio <= limit else 'no'} |")
    return "\n".join(lines)


def layer_goals(rows) -> str:
    """Issue 21's goal: each layer's default backward (no ``adjoints=``), forward + backward of
    the emitted Function, at most 1.1x autograd at the large size (the larger of its rows)."""
    lines = ["| layer | shape | ratio to autograd | <= 1.1 |", "|---|---|---|---|"]
    by_layer: dict = {}
    for row in rows:
        if row.case.startswith("layer "):
            by_layer.setdefault(row.case, []).append(row)
    for case, found in by_layer.items():
        measured = [r for r in found if r.ratio is not None]
        if not measured:
            lines.append(f"| {case} | - | unavailable: {found[0].note} | no |")
            continue
        large = measured[-1]  # the rows run small, then large
        lines.append(f"| {case} | {large.shape} | {large.ratio:.2f} | "
                     f"{'yes' if large.ratio <= 1.1 else 'no'} |")
    lines += [f"| layer {label} | - | not expressible yet: {why} | no |"
              for label, why in MISSING.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.quick, progress=lambda line: print(line, file=sys.stderr, flush=True))
    folder = ROOT / "bench"
    plot(rows, folder / "derive_depth.png")
    text = f"{HEADER}\n{machine()}\n\n## Issue 11's goals\n\n{goals(rows)}\n\n" \
        f"## Issue 21's goal: layers at most 1.1x autograd\n\n{layer_goals(rows)}\n\n" \
        f"![derivation time against depth](derive_depth.png)\n\n## All rows\n\n{table(rows)}\n"
    (folder / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
