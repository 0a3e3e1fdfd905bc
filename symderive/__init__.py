"""symderive: derive a neural-network layer's backward pass symbolically from its forward pass in
SymPy index notation, simplify it to the compact textbook form, emit vectorised NumPy and torch code,
check that code against an independent evaluator, and print the derivation as LaTeX. The API for
notebooks and scripts is ``derive``, ``emit``, ``check`` and ``latex`` (``symderive.api``)."""
# The submodules emit and check are loaded before the functions of the same names are bound
# here: a submodule loaded later would replace the package attribute with itself. (Import them as
# ``from symderive.check import run_check``; ``symderive.check`` is the function.)
from . import check as _check_module  # noqa: F401
from . import emit as _emit_module  # noqa: F401
from .api import Derivation, Document, Emitted, check, derive, emit, latex
from .builder import Builder
from .ir import Assign, Init, Input, Program, ProgramError, normal, uniform
from .ops import ArgMax, Maximum

__version__ = "0.1.0"

__all__ = [
           "ArgMax",
           "Assign",
           "Builder",
           "Derivation",
           "Document",
           "Emitted",
           "Init",
           "Input",
           "Maximum",
           "Program",
           "ProgramError",
           "check",
           "derive",
           "emit",
           "latex",
           "normal",
           "uniform",
]
