"""The command line: ``symderive check | derive | emit | latex | regen``. Exit codes are a contract: 0 success,
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
import tomllib
from pathlib import Path

from .derivation import derive_backward, load
from .emit import checked_origin, is_generated, module_source, write_atomically
from .ir import ProgramError
from .smoke import Module, verify

TARGETS = ("numpy", "torch")

DESCRIPTION = """Derive neural-network backward passes symbolically from a forward pass written in
SymPy index notation (a derivation file, derivations/<name>.py), emit standalone NumPy and torch
modules into generated/, and check them against an independent float64 evaluator, torch autograd
and finite differences. Exit codes: 0 success, 1 a check or regen --check found a difference, 2 a
bad derivation or bad arguments (one line on stderr), 3 an internal error of symderive."""

DEFAULT_FOLDERS = {"derivations": "derivations", "generated": "generated"}


def _config(folder: Path) -> dict | None:
    """``[tool.symderive]`` of ``folder/pyproject.toml``, or None when there is none."""
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ProgramError(f"{pyproject}: cannot read it: {error}") from None
    section = data.get("tool", {}).get("symderive")
    return section if isinstance(section, dict) else None


def find_root(start: str | Path | None = None) -> Path | None:
    """The project root: the nearest folder at or above ``start`` (default the current folder)
    holding ``derivations/`` or a pyproject.toml with a ``[tool.symderive]`` table; except that a
    configured folder further up wins over a bare ``derivations/`` folder below it that is its
    configured one or lies inside its project (no other pyproject.toml in between): in a src
    layout, ``src/pkg/derivations`` configured at the root is found from ``src/pkg/`` too."""
    start = Path(start if start is not None else Path.cwd()).resolve()
    for folder in [start, *start.parents]:
        if _config(folder) is not None:
            return folder
        if (folder / "derivations").is_dir():
            return _configured_above(folder) or folder
    return None


def _configured_above(bare: Path) -> Path | None:
    """The configured project root above ``bare`` (a folder holding ``derivations/`` and no
    configuration) that it belongs to; None when there is none."""
    separate = (bare / "pyproject.toml").is_file()  # a Python project of its own
    for folder in bare.parents:
        if _config(folder) is not None:
            configured = project_folders(folder)[0].resolve()
            return folder if configured == (bare / "derivations").resolve() or not separate \
                else None
        separate |= (folder / "pyproject.toml").is_file()
    return None


def project_folders(root: Path) -> tuple[Path, Path]:
    """The derivations and generated folders of the project at ``root``: ``[tool.symderive]``'s
    ``derivations`` and ``generated`` keys (relative to ``root``), else derivations/ and
    generated/."""
    config = {**DEFAULT_FOLDERS, **(_config(root) or {})}
    for key in DEFAULT_FOLDERS:
        if not isinstance(config[key], str) or not config[key]:
            raise ProgramError(f"{root / 'pyproject.toml'}: [tool.symderive] {key} must be a "
                               "folder name (a string)")
    return root / config["derivations"], root / config["generated"]


def origin_of(path: Path, root: Path | None = None) -> str:
    """A derivation's path relative to the project root (found from the file when not given), as
    the generated header names it; outside any project the path as given when relative, else the
    file name (no machine's absolute path in a generated file). A path the header cannot name
    (a line break in a folder's name) is a ``ProgramError``, before anything is derived."""
    path = Path(path)
    root = root if root is not None else find_root(path.resolve().parent)
    origin = path.name if path.is_absolute() else path.as_posix()
    if root is not None:
        try:
            origin = path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:  # the file lies outside the project
            pass
    return checked_origin(origin)


def _progress(position: int, total: int, name: str, work: str) -> None:
    """``[2/6] batchnorm: derive, emit, check`` on stderr, for work over several files."""
    if total > 1:
        print(f"[{position}/{total}] {name}: {work}", file=sys.stderr, flush=True)


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
    from . import __version__

    parser = _Parser(prog="symderive", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"symderive {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                     metavar="COMMAND", help="one of:")

    check = commands.add_parser(
        "check", help="compare the emitted modules with the oracle, autograd and finite differences",
        description="Run the emitted torch and NumPy modules and the torch autograd.Function on "
        "seeded example values and compare every gradient and forward value with the oracle, "
        "finite differences and declared references; print makemore's cmp table. Exit 1 if a "
        "row differs.")
    check.add_argument("files", nargs="+", metavar="FILE",
                       help="derivation files, e.g. derivations/makemore_mlp.py")
    check.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="the working dtype of the emitted modules (default: float32)")
    check.add_argument("--seed", type=_seed, default=0,
                       help="random seed, 0 <= N < 2**63 (torch.manual_seed's range)")
    check.add_argument("--json", action="store_true",
                       help="print one JSON object per file, one per line")

    derive = commands.add_parser(
        "derive", help="print gradients in index notation",
        description="Print each float input's gradient in index notation with its size; --wrt "
        "and --all also reach the other materialised adjoints (layer boundaries named in "
        "adjoints=).")
    derive.add_argument("files", nargs="+", metavar="FILE", help="derivation files")
    which = derive.add_mutually_exclusive_group()
    which.add_argument("--wrt", metavar="NAME", action="append",
                       help="only the adjoint of NAME: an input or any materialised adjoint "
                       "(repeatable)")
    which.add_argument("--all", action="store_true",
                       help="every materialised adjoint, not only the inputs' gradients")
    derive.add_argument("--steps", action="store_true", help="also print the rewrite steps")
    derive.add_argument("--json", action="store_true", help="print one JSON object per file")

    emit = commands.add_parser(
        "emit", help="write generated modules",
        description="Write <name>_<target>.py for each derivation file, after running every "
        "module once on the example sizes; nothing is written unless all run.")
    emit.add_argument("files", nargs="+", metavar="FILE", help="derivation files")
    emit.add_argument("--target", choices=(*TARGETS, "both"), default="both",
                      help="which module to write (default: both)")
    emit.add_argument("-o", "--output", default="generated", metavar="DIR",
                      help="folder to write into (default: generated)")

    latex = commands.add_parser(
        "latex", help="write each derivation as a LaTeX document",
        description="Write each derivation as a standalone LaTeX document: the forward "
        "statements and, per gradient, the chain rule and every rewrite step.")
    latex.add_argument("files", nargs="+", metavar="FILE", help="derivation files")
    latex.add_argument("-o", "--output", metavar="OUT.tex",
                       help="the .tex to write (one FILE only; default: <name>.tex here)")
    latex.add_argument("--pdf", action="store_true", help="also compile it with pdflatex")
    latex.add_argument("--png", action="store_true",
                       help="also compile it and convert each page to PNG with pdftoppm")

    regen = commands.add_parser(
        "regen", help="rewrite generated/ from every derivation",
        description="Rewrite the generated folder (modules and <name>.tex) from every derivation "
        "of the project, and remove the files symderive wrote that no derivation makes any "
        "more (never a file without symderive's header). The project root is the nearest "
        "folder at or above the current one holding derivations/ or a pyproject.toml with "
        "[tool.symderive] (keys derivations and generated name its folders); a configured "
        "folder further up wins over a bare derivations/ inside its project.")
    regen.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 and name the stale files if any")
    regen.add_argument("--root", metavar="DIR",
                       help="the project folder (default: found from the current folder)")
    return parser


def _derived(program):
    """The backward Program and, for a compact derivation, its gradients with their steps."""
    if program.adjoints == "all":
        return derive_backward(program), None
    from .simplify import compact_backward

    return compact_backward(program)


def generated_modules(root: Path, progress: bool = False) -> dict[Path, Module | str]:
    """Every file the generated folder should hold, by path, built in memory first: a Module per
    derivation and target, and the derivation's LaTeX document as text."""
    root = Path(root)
    source_folder, generated = project_folders(root)
    derivations = sorted(source_folder.glob("*.py"))
    if not derivations:
        raise ProgramError(f"no derivations found in {source_folder}")
    for path in derivations:  # each header can name its file, before any derivation runs
        origin_of(path, root)
    files: dict[Path, Module | str] = {}
    for position, path in enumerate(derivations, 1):
        if progress:
            _progress(position, len(derivations), path.stem, "derive, emit, latex")
        files.update(derivation_modules(load(path), path, root, generated))
    return files


def derivation_modules(program, path: Path, root: Path, generated: Path) -> dict[Path, Module | str]:
    """The files one derivation (``program``, loaded from ``path``) puts in ``generated``."""
    from .documents import document

    backward, gradients = _derived(program)
    origin = origin_of(path, root)
    files: dict[Path, Module | str] = {}
    for target in TARGETS:
        files[generated / f"{program.name}_{target}.py"] = Module(
            program, target, module_source(program, backward, target, origin))
    files[generated / f"{program.name}.tex"] = document(program, gradients=gradients)
    return files


def written_by_symderive(path: Path) -> bool:
    """A module with symderive's header, or a .tex beginning with its document preamble."""
    from .documents import PREAMBLE

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return text.startswith(PREAMBLE) if path.suffix == ".tex" else is_generated(text)


def generated_files(root: Path) -> dict[Path, str]:
    """Every file ``generated/`` should hold, by path, with its text."""
    return {path: item if isinstance(item, str) else item.source
            for path, item in generated_modules(root).items()}


def cmd_check(args) -> int:
    from .check import run_check  # imports torch; derive, emit and regen need not

    programs = [load(path) for path in args.files]  # every file must load before any runs
    ok = True
    for position, program in enumerate(programs, 1):
        _progress(position, len(programs), program.name, "derive, emit, check")
        report = run_check(program, args.dtype, args.seed)
        print(json.dumps(report.as_json()) if args.json else report.table(), flush=True)
        ok &= report.ok
    return 0 if ok else 1


def materialised_adjoints(program):
    """Every adjoint the backward materialises, as Gradients: the compact ones (inputs and the
    names in ``adjoints=``), or for ``adjoints="all"`` every adjoint's atomic statements summed."""
    import sympy as sp

    from .grad import backward
    from .simplify import Gradient, compact_gradients

    if program.adjoints != "all":
        return compact_gradients(program)
    parts: dict[str, list] = {}
    for statement in backward(program).body:
        parts.setdefault(statement.name, []).append(statement)
    return [Gradient(name[1:], found[0].lhs, sp.Add(*[s.rhs for s in found]), (), program)
            for name, found in parts.items()]


def cmd_derive(args) -> int:
    from .simplify import derive_gradients
    from .stabilize import forward_rewrites

    programs = [load(path) for path in args.files]
    for position, program in enumerate(programs, 1):
        _progress(position, len(programs), program.name, "derive")
        started = time.perf_counter()
        everything = args.all or args.wrt is not None
        gradients = materialised_adjoints(program) if everything else derive_gradients(program)
        seconds = time.perf_counter() - started
        if args.wrt is not None:
            known = [g.name for g in gradients]
            for name in args.wrt:
                if name not in known:
                    raise ProgramError(f"{program.name}: no gradient with respect to '{name}'; "
                                       f"the materialised adjoints are {', '.join(known)} (list "
                                       "another in the Builder's adjoints= to materialise it)")
            gradients = [g for name in dict.fromkeys(args.wrt) for g in gradients
                         if g.name == name]
        rows = [g.summary(program) for g in gradients]
        if args.json:
            print(json.dumps({"derivation": program.name, "seconds": seconds, "gradients": rows}))
            continue
        print(f"{program.name}: {len(gradients)} gradients in {seconds:.2f} s")
        if args.steps:
            for name, rule, before, after, _ in forward_rewrites(program):
                print(f"forward {name}: {rule}: {before} -> {after}")
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
    targets = TARGETS if args.target == "both" else (args.target,)
    origins = [origin_of(path) for path in args.files]  # each header can name its file
    programs = [(load(path), origin) for path, origin in zip(args.files, origins)]
    modules: dict[Path, Module] = {}
    for position, (program, origin) in enumerate(programs, 1):
        _progress(position, len(programs), program.name, "derive, emit")
        backward = derive_backward(program)
        for target in targets:
            modules[Path(args.output) / f"{program.name}_{target}.py"] = Module(
                program, target, module_source(program, backward, target, origin))
    verify(list(modules.values()))  # every one runs once on the example sizes, or none is written
    for path, module in modules.items():
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
    if args.root is not None:
        root = Path(args.root)
    else:
        root = find_root()
        if root is None:
            raise ProgramError(f"no symderive project at or above {Path.cwd()}: no folder holds "
                               "derivations/ or a pyproject.toml with [tool.symderive]; give --root")
    modules = generated_modules(root, progress=True)
    files = {path: item if isinstance(item, str) else item.source for path, item in modules.items()}
    folder = project_folders(root)[1]
    shown = origin_of(folder, root) + "/"  # as configured: src/pkg/generated/
    existing = set(folder.glob("*.py")) | set(folder.glob("*.tex")) if folder.is_dir() else set()
    existing = {p for p in existing if p in files or written_by_symderive(p)}  # never another's
    stale = sorted([p for p, text in files.items() if not p.is_file() or p.read_text() != text]
                   + [p for p in existing if p not in files])
    if args.check:
        for path in stale:
            print(f"stale: {path}")
        print(f"{shown}: {len(files)} files, {len(stale)} stale")
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
    removed = [p for p in stale if p not in files]
    print(f"{shown}: {len(files)} files, {len(stale) - len(removed)} rewritten, "
          f"{len(removed)} removed")
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
    except BrokenPipeError:  # the reader went away (`symderive derive ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not raise again
        return 141  # what a shell reports for a writer killed by SIGPIPE
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
