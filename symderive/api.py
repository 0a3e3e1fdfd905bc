"""The Python API for notebooks and scripts: ``derive``, ``emit``, ``check`` and ``latex`` take a
``Program`` (or the path of a derivation file) and return a result object with a readable ``repr``
and, in Jupyter, a LaTeX display (``_repr_latex_``); this module also gives ``Program`` and each
``Gradient`` theirs (the IR and the algebra know nothing of LaTeX documents). They run the same
code as the command line; nothing here is a second implementation.

>>> import symderive as sd                                             # doctest: +SKIP
>>> d = sd.derive("derivations/batchnorm.py"); d["hprebn"]             # doctest: +SKIP
>>> sd.emit(d.program, "torch").write("generated")                     # doctest: +SKIP
>>> sd.check(d.program, dtype="float64").ok                            # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from .algebra.simplify import Gradient, compact_backward, derive_backward, derive_gradients
from .codegen.emit import module_source
from .codegen.files import write_atomically
from .program.ir import Program, ProgramError
from .program.load import load
from .tex.documents import document, gradient_latex, program_latex
from .tex.engines import compile_pdf, to_png
from .verify.smoke import Module, verify


def as_program(program: Program | str | Path) -> Program:
    """A Program as it is, or the one a derivation file builds."""
    if isinstance(program, Program):
        return program
    if isinstance(program, (str, Path)):
        return load(program)
    raise ProgramError(f"expected a Program or a derivation file's path, not "
                       f"{type(program).__name__}")


def display_math(align: str) -> str:
    """An ``align*`` block as display math Jupyter's MathJax renders (``aligned`` in ``$$``)."""
    return ("$$" + align.replace(r"\begin{align*}", r"\begin{aligned}")
            .replace(r"\end{align*}", r"\end{aligned}").replace(r"\pluseq", r"\mathrel{+}=")
            + "$$")


@dataclass(frozen=True)
class Derivation:
    """The derived backward of a program: its gradients (with their steps) and the backward
    Program the emitter lowers. ``derivation["x"]`` is the gradient with respect to ``x``."""

    program: Program
    backward: Program
    gradients: tuple[Gradient, ...]

    def __getitem__(self, name: str) -> Gradient:
        found = next((g for g in self.gradients if g.name == name), None)
        if found is None:
            raise KeyError(f"{self.program.name} has no gradient with respect to '{name}'; it "
                           f"has {', '.join(g.name for g in self.gradients)}")
        return found

    def __repr__(self) -> str:
        lines = [f"Derivation({self.program.name}: {len(self.gradients)} gradients)"]
        for gradient in self.gradients:
            row = gradient.summary(self.program)
            lines.append(f"  {gradient.lhs} = {gradient.expr}")
            lines.append(f"      ops {row['ops']}, reductions {row['reductions']}, "
                         f"steps {row['steps']}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        return "\n".join(display_math(gradient_latex(g, self.program)) for g in self.gradients)


def derive(program: Program | str | Path) -> Derivation:
    """Derive ``program``'s backward: each input's compact gradient with the rewrite steps that
    produced it (every adjoint, atomically, for ``adjoints="all"``)."""
    program = as_program(program)
    if program.adjoints == "all":
        return Derivation(program, derive_backward(program), tuple(derive_gradients(program)))
    backward, gradients = compact_backward(program)
    return Derivation(program, backward, tuple(gradients))


@dataclass(frozen=True)
class Emitted:
    """One emitted module's source; ``write(folder)`` runs it once, then writes it atomically."""

    program: Program
    target: str
    source: str

    @property
    def filename(self) -> str:
        return f"{self.program.name}_{self.target}.py"

    def write(self, folder: str | Path = "generated") -> Path:
        verify([Module(self.program, self.target, self.source)])
        path = Path(folder) / self.filename
        write_atomically(path, self.source)
        return path

    def __repr__(self) -> str:
        return f"Emitted({self.filename}, {len(self.source.splitlines())} lines)\n{self.source}"


def emit(program: Program | str | Path, target: str = "torch") -> Emitted:
    """The standalone NumPy or torch module of ``program`` (forward, backward and, for torch,
    an ``autograd.Function``), as text; nothing is written until ``.write()``."""
    if target not in ("numpy", "torch"):
        raise ProgramError(f"target must be 'numpy' or 'torch', not {target!r}")
    program = as_program(program)
    # derivation and emission pause the cycle collector themselves (cycle_collection_paused)
    return Emitted(program, target, module_source(program, derive_backward(program), target))


def check(program: Program | str | Path, dtype: str = "float32", seed: int = 0):
    """Run ``symderive check`` on ``program``: a ``Report`` whose ``ok`` says whether every row
    agrees, printed as makemore's ``cmp`` table."""
    from .verify.check import DTYPES, run_check  # torch: loaded only when something is checked

    if dtype not in DTYPES:
        raise ProgramError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return run_check(as_program(program), dtype, seed)


@dataclass(frozen=True)
class Document:
    """A derivation's standalone LaTeX document; ``write``, ``pdf`` and ``png`` make files."""

    program: Program
    tex: str

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        write_atomically(path, self.tex)
        return path

    def pdf(self, path: str | Path) -> Path:
        """Write the ``.tex`` at ``path`` and compile it with pdflatex; the PDF's path."""
        return compile_pdf(self.write(path))

    def png(self, path: str | Path) -> list[Path]:
        """Compile as ``pdf`` and convert every page to PNG with pdftoppm."""
        return to_png(self.pdf(path))

    def __repr__(self) -> str:
        return f"Document({self.program.name}.tex, {len(self.tex.splitlines())} lines)"

    def _repr_latex_(self) -> str:
        return derive(self.program)._repr_latex_()


def latex(program: Program | str | Path) -> Document:
    """The derivation of ``program`` as a standalone LaTeX document (forward statements; per
    gradient the chain rule, one line per rewrite step, the boxed result)."""
    program = as_program(program)
    gradients = None if program.adjoints == "all" else compact_backward(program)[1]
    return Document(program, document(program, gradients=gradients))


# -- rich display: the face attaches it to the lower stages' records ----------------------------
def _program_display(program: Program) -> str:
    """The forward statements as Jupyter displays them."""
    return display_math(program_latex(program))


def _gradient_display(gradient: Gradient) -> str:
    """The derivation of one gradient, a line per step, as Jupyter displays it."""
    if gradient.program is None:
        return f"$${sp.latex(gradient.expr)}$$"
    return display_math(gradient_latex(gradient, gradient.program))


Program._repr_latex_ = _program_display
Gradient._repr_latex_ = _gradient_display
