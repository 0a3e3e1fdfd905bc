"""The pytest plugin: ``pytest --symderive`` checks every derivation of a project as test items.

Registered through the ``pytest11`` entry point, so installing symderive is enough. With
``--symderive``, each derivation file of the project (``derivations/*.py``, or the folders that
``[tool.symderive]`` in the project's pyproject.toml names: keys ``derivations`` and
``generated``) is collected as three items:

- ``<file>::generated``: the generated modules and LaTeX document are current (``symderive regen``
  would change nothing for this derivation);
- ``<file>::check[float64]`` and ``<file>::check[float32]``: ``symderive check`` of the generated
  modules as written (emitted afresh where missing) in that dtype (seed 0) finds every row
  approximately equal, the Function's gradients under ``create_graph=True`` (through the derived
  ``gradients()``) included; a failure shows the rows that differ;
- ``<file>::gradcheck`` and ``<file>::gradgradcheck``: the generated torch module's Function, as
  written in the generated folder, under ``torch.autograd.gradcheck`` and ``gradgradcheck``
  (float64, every size at most 3); a failure names the gradient that differs from finite
  differences. A Function whose double backward is not derived skips ``gradgradcheck``, saying why.

The project root is the nearest folder at or above the folder pytest was started in that holds
``derivations/`` or a pyproject.toml with ``[tool.symderive]`` (as ``symderive regen`` finds it);
without one the option reports a usage error.
"""
from __future__ import annotations

from pathlib import Path

import pytest

DTYPES = ("float64", "float32")


class SymderiveFailure(Exception):
    """A derivation item's failure, shown as its message alone (no traceback)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("symderive", "symderive derivations")
    group.addoption("--symderive", action="store_true", default=False,
                    help="collect every derivation of the project as test items: generated "
                    "files current, check in float64 and float32")
    group.addoption("--symderive-seed", type=int, default=0, metavar="N",
                    help="the seed of the checks' example values (default 0)")


def _project(config: pytest.Config) -> tuple[Path, Path, Path]:
    from .cli import find_root, project_folders

    root = find_root(config.invocation_params.dir) or find_root(config.rootpath)
    if root is None:
        raise pytest.UsageError(f"--symderive: no symderive project at or above "
                                f"{config.invocation_params.dir}: no folder holds derivations/ "
                                "or a pyproject.toml with [tool.symderive]")
    derivations, generated = project_folders(root)
    return root, derivations, generated


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect, so they apply to these items too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not config.getoption("symderive"):
        return
    from .ir import ProgramError

    try:
        root, derivations, generated = _project(config)
    except ProgramError as error:
        raise pytest.UsageError(f"--symderive: {error}") from None
    paths = sorted(derivations.glob("*.py"))
    if not paths:
        raise pytest.UsageError(f"--symderive: no derivations found in {derivations}")
    for path in paths:
        collector = DerivationFile.from_parent(session, path=path)
        collector.project = (root, generated)
        items.extend(collector.collect())


class DerivationFile(pytest.File):
    """One derivation file; loads its Program once, for all of its items."""

    project: tuple[Path, Path]
    _loaded = None

    def program(self):
        if self._loaded is None:
            from .derivation import load
            from .ir import ProgramError

            try:
                self._loaded = load(self.path)
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
        from .cli import derivation_modules

        root, generated = self.parent.project
        program = self.parent.program()
        stale = []
        for path, item in derivation_modules(program, self.path, root, generated).items():
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
        from .check import run_check
        from .ir import ProgramError

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
        import re
        from dataclasses import replace

        import torch
        from torch.autograd.gradcheck import GradcheckError

        from .check import example_inputs, load_module

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
        import re

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
