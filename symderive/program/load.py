"""Derivation files: run one and return the Program it builds, validated; a file that fails, prints
to stdout or builds something else is one ``ProgramError`` line naming the file and line.
"""
from __future__ import annotations

import contextlib
import keyword
import os
import re
import runpy
import sys
import traceback
import unicodedata
from pathlib import Path

from .ir import Program, ProgramError
from .validate import validated


def _check_file_name(path: Path) -> None:
    stem = path.stem
    if path.suffix != ".py":
        raise ProgramError(f"{path}: a derivation file is a Python file ending in .py")
    if not stem.isidentifier() or keyword.iskeyword(stem) or stem.startswith("_") or \
            unicodedata.normalize("NFKC", stem) != stem:
        better = re.sub(r"\W", "_", unicodedata.normalize("NFKC", stem)).strip("_") or "layer"
        better = better if better.isidentifier() and not keyword.iskeyword(better) \
            else f"layer_{better}"
        raise ProgramError(f"{path}: the file name names the program and its generated modules, "
                           f"so it must be a Python identifier; rename it to {better}.py")


def _line_in(path: Path, error: BaseException) -> str:
    """``file.py line N``: the last line of the derivation file in the error's traceback."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    if isinstance(error, SyntaxError) and error.lineno:  # raised while compiling: no frame yet
        lines.append(error.lineno)
    return f"{path} line {lines[-1]}" if lines else str(path)


def _sympy_slip(path: Path, error: BaseException) -> str | None:
    """What to write instead, for two slips SymPy reports in words about its internals: a Sum
    whose limit is not an index (``Sum(x[i], 1.0)``), and a SymPy expression handed to a
    ``math`` function or ``float()`` (``math.sqrt(x[i])``)."""
    text = str(error)
    if isinstance(error, ValueError) and text.startswith(("Invalid limits given",
                                                          "Sum requires values for lower")):
        limits = text.split(": ", 1)[1].strip("(,)") if ": " in text else ""
        given = f"Sum(..., {limits}): " if limits else ""
        return (f"{given}a Sum runs over an index, not a number or a size; write Sum(..., i) "
                "over an Idx declared i = Idx('i', n)")
    if isinstance(error, TypeError) and text == "Cannot convert expression to float":
        lines = [frame.line or "" for frame in traceback.extract_tb(error.__traceback__)
                 if Path(frame.filename).resolve() == path.resolve()]
        called = re.search(r"\bmath\.(\w+)\s*\(", lines[-1] if lines else "")
        if called:
            return (f"math.{called.group(1)} cannot take a SymPy expression; write "
                    f"sympy.{called.group(1)}(...), which keeps the statement symbolic")
        return ("a SymPy expression was turned into a float (a math function or float() of "
                "it); use SymPy's functions (sympy.sqrt, sympy.exp, sympy.log), which keep the "
                "statement symbolic")
    return None


@contextlib.contextmanager
def _stdout_to_stderr():
    """A derivation's prints go to stderr, so symderive's stdout (``--json``) stays its own."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no real file descriptors (an embedding host): redirect sys.stdout alone
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


# The derivation files each load in progress has read: its own, and every file a load inside it
# (an include) read, in the order they were read.
_READING: list[list[Path]] = []


def load(path: str | Path) -> Program:
    """Run a derivation file and return the Program it builds; any failure is a ProgramError."""
    return load_with_files(path)[0]


def load_with_files(path: str | Path) -> tuple[Program, tuple[Path, ...]]:
    """``load``, and the derivation files the program was built from: ``path`` first, then every
    file it loaded (``include(load(...))``), at any depth, each once. What ``regen`` hashes to
    know that a derivation's generated files are current without running it."""
    resolved = Path(path).resolve()
    for files in _READING:  # the loads around this one read it too
        files.append(resolved)
    _READING.append([resolved])
    try:
        program = _load(path)
    finally:
        files = _READING.pop()
    return program, tuple(dict.fromkeys(files))


def _load(path: str | Path) -> Program:
    path = Path(path)
    _check_file_name(path)
    if not path.is_file():
        raise ProgramError(f"{path}: no such derivation file")
    try:
        with _stdout_to_stderr():
            namespace = runpy.run_path(str(path), run_name=f"derivation_{path.stem}")
    except ProgramError:
        raise
    except SystemExit as error:
        raise ProgramError(f"{_line_in(path, error)}: the file calls sys.exit({error.code!r}); a "
                           "derivation file only builds its program") from None
    except BaseException as error:  # user code: one line naming where it failed, no traceback
        slip = _sympy_slip(path, error)
        if slip is not None:
            raise ProgramError(f"{_line_in(path, error)}: {slip}") from None
        detail = f": {error}" if str(error) else ""
        if not isinstance(error, Exception):  # KeyboardInterrupt, GeneratorExit, BaseException
            detail += "; a derivation file only builds its program"
        raise ProgramError(f"{_line_in(path, error)}: {type(error).__name__}{detail}") from None
    program = namespace.get("program")
    if program is None:
        raise ProgramError(f"{path}: defines no 'program'; end it with program = builder.build()")
    if not isinstance(program, Program):
        hint = " (call .build() on it)" if type(program).__name__ == "Builder" else ""
        raise ProgramError(f"{path}: 'program' is a {type(program).__name__}, not a Program"
                           f"{hint}; end the file with program = builder.build()")
    if program.name != path.stem:
        raise ProgramError(f"{path}: builds program '{program.name}'; name it '{path.stem}' "
                           f"(Builder(\"{path.stem}\", ...)), because the generated modules are "
                           f"named after the program and regen finds them by the file's name")
    return validated(program)  # a Program made without Builder.build, or changed after, too
