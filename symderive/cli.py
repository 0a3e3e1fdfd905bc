"""The command line: ``symderive check | derive | emit | regen``. Exit codes are a contract: 0 success,
1 a check or ``regen --check`` found a difference, 2 a bad derivation or bad arguments (one line on
stderr, never a traceback), 3 an internal error of symderive itself."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .derivation import derive_backward, load
from .emit import module_source, write_atomically
from .ir import ProgramError

TARGETS = ("numpy", "torch")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for a bad derivation
        self.exit(2, f"symderive: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symderive", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser("check", help="compare the emitted backward with torch autograd")
    check.add_argument("files", nargs="+", metavar="FILE",
                       help="derivation files, e.g. derivations/makemore_mlp.py")
    check.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--json", action="store_true",
                       help="print one JSON object per file, one per line")

    derive = commands.add_parser("derive", help="print each input's gradient in index notation")
    derive.add_argument("files", nargs="+", metavar="FILE")
    derive.add_argument("--wrt", metavar="NAME", help="only the gradient of this input")
    derive.add_argument("--steps", action="store_true", help="also print the rewrite steps")
    derive.add_argument("--json", action="store_true", help="print one JSON object")

    emit = commands.add_parser("emit", help="write one generated module")
    emit.add_argument("file")
    emit.add_argument("--target", choices=TARGETS, required=True)
    emit.add_argument("-o", "--output", default="generated", help="folder (default: generated)")

    regen = commands.add_parser("regen", help="rewrite generated/ from every derivation")
    regen.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 and name the stale files if any")
    regen.add_argument("--root", default=".", help="project folder holding derivations/")
    return parser


def generated_files(root: Path) -> dict[Path, str]:
    """Every file ``generated/`` should hold, by path, built in memory first."""
    derivations = sorted((root / "derivations").glob("*.py"))
    if not derivations:
        raise ProgramError(f"no derivations found in {root / 'derivations'}")
    files = {}
    for path in derivations:
        program = load(path)
        backward = derive_backward(program)
        for target in TARGETS:
            files[root / "generated" / f"{program.name}_{target}.py"] = module_source(
                program, backward, target)
    return files


def cmd_check(args) -> int:
    from .check import run_check  # imports torch; derive, emit and regen need not

    programs = [load(path) for path in args.files]  # every file must load before any runs
    ok = True
    for program in programs:
        report = run_check(program, args.dtype, args.seed)
        print(json.dumps(report.as_json()) if args.json else report.table(), flush=True)
        ok &= report.ok
    return 0 if ok else 1


def cmd_derive(args) -> int:
    from .simplify import derive_gradients

    programs = [load(path) for path in args.files]
    for program in programs:
        started = time.perf_counter()
        gradients = derive_gradients(program)
        seconds = time.perf_counter() - started
        if args.wrt is not None:
            gradients = [g for g in gradients if g.name == args.wrt]
            if not gradients:
                raise ProgramError(f"{program.name}: no gradient with respect to '{args.wrt}'; "
                                   f"the inputs are {', '.join(x.name for x in program.inputs)}")
        rows = [g.summary(program) for g in gradients]
        if args.json:
            print(json.dumps({"derivation": program.name, "seconds": seconds, "gradients": rows}))
            continue
        print(f"{program.name}: {len(gradients)} gradients in {seconds:.2f} s")
        for gradient, row in zip(gradients, rows):
            print(f"{gradient.lhs} = {gradient.expr}")
            print(f"    ops {row['ops']}, reductions {row['reductions']}, steps {row['steps']}, "
                  f"uses {', '.join(row['uses'])}")
            if args.steps:
                for step in gradient.steps:
                    print(f"    {step.rule:>15}: {step.after}")
    return 0


def cmd_emit(args) -> int:
    program = load(args.file)
    path = Path(args.output) / f"{program.name}_{args.target}.py"
    write_atomically(path, module_source(program, derive_backward(program), args.target))
    print(path)
    return 0


def cmd_regen(args) -> int:
    root = Path(args.root)
    files = generated_files(root)
    existing = {p for p in (root / "generated").glob("*.py")} if (root / "generated").is_dir() \
        else set()
    stale = sorted([p for p, text in files.items() if not p.is_file() or p.read_text() != text]
                   + [p for p in existing if p not in files])
    if args.check:
        for path in stale:
            print(f"stale: {path}")
        print(f"generated/: {len(files)} files, {len(stale)} stale")
        return 1 if stale else 0
    for path, text in files.items():
        if path in stale:
            write_atomically(path, text)
    for path in stale:
        if path not in files:
            path.unlink()
    print(f"generated/: {len(files)} files, {len(stale)} rewritten")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"check": cmd_check, "derive": cmd_derive, "emit": cmd_emit, "regen": cmd_regen}
        return commands[args.command](args)
    except ProgramError as error:
        print(f"symderive: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug in symderive, not in the derivation: say so, distinctly
        if os.environ.get("SYMDERIVE_TRACEBACK"):
            raise
        print(f"symderive: internal error: {type(error).__name__}: {error} (set "
              "SYMDERIVE_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
