"""Run the suite: ``python -m bench [--quick] [--json] [--only WORD]``. ``--quick`` takes the
small shapes and fewer repetitions (under two minutes); ``--json`` prints the rows as a JSON list
instead of a table. A case that fails becomes one row marked unavailable, with the error, so one
broken module does not hide the rest."""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from . import derive, gated_mlp, kernels, layers, makemore, memory
from .timing import Row, steady_allocator, threads

MODULES = (kernels, memory, makemore, gated_mlp, layers, derive)


def run(quick: bool, only: str = "", progress=None) -> list[Row]:
    torch.set_num_threads(1)  # the machines are shared: one thread keeps the ratios steady
    steady_allocator()
    repeat = 7 if quick else 21
    rows: list[Row] = []
    for module in MODULES:
        for label, case in module.cases(quick, repeat):
            if only and only not in label:
                continue
            start = time.perf_counter()
            try:
                found = case()
            except Exception as error:
                found = [Row(label, "-", "-", threads(), "-", None, available=False,
                             note=f"failed: {type(error).__name__}: {str(error)[:200]}")]
            rows += found
            if progress:
                progress(f"{label}: {len(found)} rows, {time.perf_counter() - start:.1f} s")
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| case | shape | dtype | threads | baseline | ratio | generated | baseline |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "unavailable"
        if row.generated_bytes is not None:
            ours, theirs = _size(row.generated_bytes), _size(row.baseline_bytes)
        else:
            ours, theirs = _duration(row.generated_s), _duration(row.baseline_s)
        note = f" ({row.note})" if row.note and row.ratio is None else ""
        lines.append(f"| {row.case} | {row.shape} | {row.dtype} | {row.threads} | {row.baseline}"
                     f"{note} | {ratio} | {ours} | {theirs} |")
    return "\n".join(lines)


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 0.1:
        return f"{value:.2f} s"
    if value >= 1e-4:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} us"


def _size(value: int) -> str:
    if value >= 1 << 20:
        return f"{value / (1 << 20):.2f} MiB"
    return f"{value / 1024:.1f} KiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small shapes, fewer repetitions")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--only", default="", help="run only the cases whose label has WORD")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.only, lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=1))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
