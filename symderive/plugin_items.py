"""The test items of ``pytest --symderive`` (see ``symderive.plugin``): per derivation file, its
generated files current, ``check`` in float64 and float32, and the generated Function under
``gradcheck`` and ``gradgradcheck``; a failure is shown as its message alone."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from .commands import derivation_modules
from .program.errors import ProgramError
from .program.load import load_with_files
from .verify.check import example_inputs, load_module, run_check

DTYPES = ("float64", "float32")


class SymderiveFailure(Exception):
    """A derivation item's failure, shown as its message alone (no traceback)."""


class DerivationFile(pytest.File):
    """One derivation file; loads its Program once, for all of its items."""

    project: tuple[Path, Path]
    read: tuple[Path, ...] = ()  # the derivation files its program was built from
    _loaded = None

    def program(self):
        if self._loaded is None:

            try:
                self._loaded, self.read = load_with_files(self.path)
            except ProgramError as error:
                self._loaded = error
        if isinstance(self._loaded, Exception):
            raise SymderiveFailure(f"bad derivation: {self._loaded}")
        return self._loaded

    def collect(self):
        yield GeneratedItem.from_parent(self, name="generated")
        for dtype in DTYPES:
            yield CheckItem.from_parent(self, name=f"check[{dtype}]", dtype=dtype)
        for order in (1, 2):
            yield GradcheckItem.from_parent(self, name="grad" * order + "check", order=order)


class _DerivationItem(pytest.Item):
    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, SymderiveFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"


class GeneratedItem(_DerivationItem):
    """The derivation's generated modules and document equal what ``regen`` would write."""

    def runtest(self) -> None:

        root, generated = self.parent.project
        program = self.parent.program()
        stale = []
        for path, item in derivation_modules(program, self.path, root, generated,
                                             self.parent.read).items():
            text = item if isinstance(item, str) else item.source
            if not path.is_file():
                stale.append(f"missing: {path}")
            elif path.read_text() != text:
                stale.append(f"stale: {path}")
        if stale:
            raise SymderiveFailure("\n".join(
                [f"{program.name}: the generated files are not current; run symderive regen",
                 *stale]))


class CheckItem(_DerivationItem):
    """``symderive check`` of the derivation in one dtype."""

    def __init__(self, *, dtype: str, **kwargs):
        super().__init__(**kwargs)
        self.dtype = dtype

    def runtest(self) -> None:

        program = self.parent.program()
        _, generated = self.parent.project
        # the modules as written, so a hand edit shows as the rows it breaks
        sources = {target: path.read_text() for target in ("numpy", "torch")
                   if (path := generated / f"{program.name}_{target}.py").is_file()}
        try:
            report = run_check(program, self.dtype, self.config.getoption("symderive_seed"),
                               sources)
        except ProgramError as error:
            raise SymderiveFailure(f"bad derivation: {error}") from None
        if not report.ok:
            differ = [row for row in report.rows + report.forward if not row.approximate]
            total = len(report.rows) + len(report.forward)
            lines = [f"{program.name}: {len(differ)} of {total} rows differ ({self.dtype})"]
            lines += [f"{row.line()} | relmaxdiff: {row.relmaxdiff:.3g} | target: {row.target} "
                      f"| reference: {row.reference}" for row in differ]
            raise SymderiveFailure("\n".join(lines))


GRADCHECK_SIZE = 3  # gradcheck differentiates numerically element by element: keep arrays tiny


class GradcheckItem(_DerivationItem):
    """The generated torch Function under ``gradcheck`` (``order`` 1) or ``gradgradcheck`` (2)."""

    def __init__(self, *, order: int, **kwargs):
        super().__init__(**kwargs)
        self.order = order

    def runtest(self) -> None:



        _, generated = self.parent.project
        program = self.parent.program()
        path = generated / f"{program.name}_torch.py"
        if not path.is_file():
            raise SymderiveFailure(f"{program.name}: missing {path}; run symderive regen")
        source = path.read_text()
        module = load_module(source, f"{program.name}_torch")
        if self.order == 2 and not hasattr(module, "double_backward"):
            reason = re.search(r"@once_differentiable  # (.*)", source)
            pytest.skip(f"{program.name}: no derived double backward"
                        f"{': ' + reason.group(1) if reason else ''}")
        small = replace(program, sizes=tuple((size, min(value, GRADCHECK_SIZE))
                                             for size, value in program.sizes))
        inputs = example_inputs(small, torch.float64, self.config.getoption("symderive_seed"))
        floats = [name for name, value in inputs.items() if value.is_floating_point()]
        entry = getattr(module, program.name)

        def function(*values):
            return entry(**(inputs | dict(zip(floats, values))))

        leaves = [inputs[name].clone().requires_grad_() for name in floats]
        check = torch.autograd.gradcheck if self.order == 1 else torch.autograd.gradgradcheck
        try:
            check(function, leaves)
        except GradcheckError as error:
            raise SymderiveFailure(self._row(program, floats, str(error))) from None

    def _row(self, program, floats: list[str], message: str) -> str:
        """The failing gradient, named: gradcheck numbers outputs and inputs; for gradgradcheck
        the outputs are the first-order gradients and the inputs are followed by the upstream
        adjoints."""

        kind = self.name
        found = re.search(r"output (\d+) with respect to input (\d+)", message)
        if found is None:
            return f"{program.name}: {kind} fails: {message.splitlines()[0]}"
        output, wrt = int(found.group(1)), int(found.group(2))
        upstream = [f"the upstream adjoint of {name}" for name in program.outputs]
        if self.order == 1:
            what = f"the gradient of {program.outputs[output]}"
        else:
            what = f"the derivative of the gradient of {floats[output]}"
        return (f"{program.name}: {kind} fails: {what} with respect to "
                f"{(floats + upstream)[wrt]} differs from finite differences\n"
                f"{message.splitlines()[0]}")
