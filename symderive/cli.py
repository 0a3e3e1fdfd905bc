"""The command line: ``symderive check | derive | emit | latex | regen``. Parsing and dispatch only:
the work (``commands``) loads after the arguments are parsed, so ``--help`` and ``--version``
answer at once. Exit codes are a contract: 0 success, 1 a check or ``regen --check`` found a
difference, 2 a bad derivation or bad arguments (one line on stderr, never a traceback), 3 an
internal error of symderive itself. A derivation file's own output goes to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from . import __version__
from .codegen.files import TARGETS
from .program.errors import ProgramError

DESCRIPTION = """Derive neural-network backward passes symbolically from a forward pass written in
SymPy index notation (a derivation file, derivations/<name>.py), emit standalone NumPy and torch
modules into generated/, and check them against an independent float64 evaluator, torch autograd
and finite differences. Exit codes: 0 success, 1 a check or regen --check found a difference, 2 a
bad derivation or bad arguments (one line on stderr), 3 an internal error of symderive."""


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


def _parser() -> argparse.ArgumentParser:
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
    derive.add_argument("--cost", action="store_true",
                        help="also print each gradient's and the whole backward's cost as lowered "
                             "(operations and bytes, at the example sizes and a large profile)")

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
                       help="write nothing; exit 1 and name the stale files if any (every "
                       "derivation is run and its files compared)")
    regen.add_argument("--force", action="store_true",
                       help="run every derivation, also those whose generated files state the "
                       "digest of their inputs as they are now (their file, what it loads and "
                       "symderive's version), which regen otherwise leaves as they are")
    regen.add_argument("--root", metavar="DIR",
                       help="the project folder (default: found from the current folder)")
    return parser


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
        # the work (SymPy, and torch for check) loads only now, for the command that needs it:
        # --help, --version and a bad argument answer without it
        commands = importlib.import_module(f"{__package__}.commands")
        return getattr(commands, f"cmd_{args.command}")(args)
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
