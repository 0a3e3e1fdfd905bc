"""The command line: ``symderive check | derive | emit | regen``. Exit codes are a contract: 0 success,
1 a check or ``regen --check`` found a difference, 2 a bad derivation or bad arguments (one line on
stderr, never a traceback), 3 an internal error of symderive itself. A derivation file's own output goes
to stderr, so stdout holds only symderive's (pure JSON with ``--json``)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .derivation import derive_backward, load
from .emit import module_source, write_atomically
from .ir import ProgramError
from .smoke import Module, verify

TARGETS = ("numpy", "torch")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for a bad derivation
        self.exit(2, f"symderive: error: {message}\n")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is out of range; use 0 <= N < 2**63 "
                                         "(torch.manual_seed's range)")
    return value


def _writable_folder(folder: Path) -> None:
    """Refuse ``-o`` before any work when nothing could be written there."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "it is" if existing == folder else f"{existing} is"
        raise ProgramError(f"cannot write {folder}: {where} a file, not a folder; give -o a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ProgramError(f"cannot write {folder}: {existing} is not writable; give -o a "
                           "folder you can write")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symderive", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser("check", help="compare the emitted backward with torch autograd")
    check.add_argument("files", nargs="+", metavar="FILE",
                       help="derivation files, e.g. derivations/makemore_mlp.py")
    check.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    check.add_argument("--seed", type=_seed, default=0,
                       help="random seed, 0 <= N < 2**63 (torch.manual_seed's range)")
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

    latex = commands.add_parser("latex", help="write each derivation as a LaTeX document")
    latex.add_argument("files", nargs="+", metavar="FILE")
    latex.add_argument("-o", "--output", metavar="OUT.tex",
                       help="the .tex to write (one FILE only; default: <name>.tex here)")
    latex.add_argument("--pdf", action="store_true", help="also compile it with pdflatex")
    latex.add_argument("--png", action="store_true",
                       help="also compile it and convert each page to PNG with pdftoppm")

    regen = commands.add_parser("regen", help="rewrite generated/ from every derivation")
    regen.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 and name the stale files if any")
    regen.add_argument("--root", default=".", help="project folder holding derivations/")
    return parser


def _derived(program):
    """The backward Program and, for a compact derivation, its gradients with their steps."""
    if program.adjoints == "all":
        return derive_backward(program), None
    from .simplify import compact_backward

    return compact_backward(program)


def generated_modules(root: Path) -> dict[Path, Module | str]:
    """Every file ``generated/`` should hold, by path, built in memory first: a Module per
    derivation and target, and the derivation's LaTeX document as text."""
    from .documents import document

    derivations = sorted((root / "derivations").glob("*.py"))
    if not derivations:
        raise ProgramError(f"no derivations found in {root / 'derivations'}")
    files: dict[Path, Module | str] = {}
    for path in derivations:
        program = load(path)
        backward, gradients = _derived(program)
        for target in TARGETS:
            files[root / "generated" / f"{program.name}_{target}.py"] = Module(
                program, target, module_source(program, backward, target))
        files[root / "generated" / f"{program.name}.tex"] = document(program, gradients=gradients)
    return files


def generated_files(root: Path) -> dict[Path, str]:
    """Every file ``generated/`` should hold, by path, with its text."""
    return {path: item if isinstance(item, str) else item.source
            for path, item in generated_modules(root).items()}


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
    _writable_folder(Path(args.output))
    program = load(args.file)
    path = Path(args.output) / f"{program.name}_{args.target}.py"
    module = Module(program, args.target, module_source(program, derive_backward(program),
                                                        args.target))
    verify([module])  # it runs once on the example sizes, or nothing is written
    write_atomically(path, module.source)
    print(path)
    return 0


def cmd_latex(args) -> int:
    from .documents import compile_pdf, document, to_png

    programs = [load(path) for path in args.files]  # every file must load before any is written
    if args.output and len(programs) > 1:
        raise ProgramError("-o names one .tex file; give one derivation file, or leave -o out")
    for program, source in zip(programs, args.files):
        tex = Path(args.output) if args.output else Path(source).with_suffix(".tex").name
        tex = Path(tex)
        if tex.suffix != ".tex":
            raise ProgramError(f"-o {tex}: the output must end in .tex")
        write_atomically(tex, document(program, gradients=_derived(program)[1]))
        print(tex)
        if args.pdf or args.png:
            pdf = compile_pdf(tex)
            print(pdf)
            if args.png:
                for png in to_png(pdf):
                    print(png)
    return 0


def cmd_regen(args) -> int:
    root = Path(args.root)
    modules = generated_modules(root)
    files = {path: item if isinstance(item, str) else item.source for path, item in modules.items()}
    folder = root / "generated"
    existing = set(folder.glob("*.py")) | set(folder.glob("*.tex")) if folder.is_dir() else set()
    stale = sorted([p for p, text in files.items() if not p.is_file() or p.read_text() != text]
                   + [p for p in existing if p not in files])
    if args.check:
        for path in stale:
            print(f"stale: {path}")
        print(f"generated/: {len(files)} files, {len(stale)} stale")
        return 1 if stale else 0
    verify([modules[path] for path in stale  # all run, or nothing is written
            if isinstance(modules.get(path), Module)])
    for path, text in files.items():
        if path in stale:
            write_atomically(path, text)
    for path in stale:
        if path not in files:
            path.unlink()
            print(f"removed: {path}")
    print(f"generated/: {len(files)} files, {len(stale)} rewritten")
    return 0


def _interrupted(signum, frame):
    # SIGTERM as an exception, so a write in progress removes its temp file on the way out
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # bad arguments (one line on stderr, code 2) or --help (0)
        return int(exit.code or 0)
    try:
        commands = {"check": cmd_check, "derive": cmd_derive, "emit": cmd_emit,
                    "latex": cmd_latex, "regen": cmd_regen}
        return commands[args.command](args)
    except ProgramError as error:
        message = " ".join(str(error).splitlines())  # one line, whatever the message holds
        print(f"symderive: {message}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug in symderive, not in the derivation: say so, distinctly
        if os.environ.get("SYMDERIVE_TRACEBACK"):
            raise
        message = " ".join(str(error).splitlines())
        print(f"symderive: internal error: {type(error).__name__}: {message} (set "
              "SYMDERIVE_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
