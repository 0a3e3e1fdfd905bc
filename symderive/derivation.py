"""Derivation files: load the one Program a ``derivations/*.py`` file builds, and derive the
backward it asks for (every adjoint, atomically, or only the materialised ones, simplified)."""
from __future__ import annotations

import runpy
from pathlib import Path

from .grad import backward
from .ir import Program, ProgramError


def load(path: str | Path) -> Program:
    """Run a derivation file and return the Program it builds; any failure is a ProgramError."""
    path = Path(path)
    if not path.is_file():
        raise ProgramError(f"{path}: no such derivation file")
    try:
        namespace = runpy.run_path(str(path), run_name=f"derivation_{path.stem}")
    except ProgramError:
        raise
    except Exception as error:  # the file is user code: report it in one line, not a traceback
        raise ProgramError(f"{path}: {type(error).__name__}: {error}") from error
    program = namespace.get("program")
    if not isinstance(program, Program):
        raise ProgramError(f"{path}: a derivation file must end with program = builder.build()")
    if program.name != path.stem:
        raise ProgramError(f"{path}: builds program '{program.name}'; name it '{path.stem}' so "
                           "its generated files can be found")
    return program


def derive_backward(program: Program) -> Program:
    """The backward Program ``program`` asks for: every adjoint, one statement per dependency
    (``adjoints="all"``, makemore's exercise 1), or only the materialised adjoints, simplified."""
    if program.adjoints == "all":
        return backward(program)
    from .simplify import compact_backward

    return compact_backward(program)[0]
