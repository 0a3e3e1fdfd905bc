"""The pytest plugin: ``pytest --symderive`` checks every derivation of a project as test items.

Registered through the ``pytest11`` entry point, so installing symderive is enough. With
``--symderive``, each derivation file of the project (``derivations/*.py``, or the folders that
``[tool.symderive]`` in the project's pyproject.toml names: keys ``derivations`` and
``generated``) is collected as three items:

- ``<file>::generated``: the generated modules and LaTeX document are current (``symderive regen``
  would change nothing for this derivation);
- ``<file>::check[float64]`` and ``<file>::check[float32]``: ``symderive check`` in that dtype
  (seed 0) finds every row approximately equal; a failure shows the rows that differ.

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
        try:
            report = run_check(program, self.dtype, self.config.getoption("symderive_seed"))
        except ProgramError as error:
            raise SymderiveFailure(f"bad derivation: {error}") from None
        if not report.ok:
            differ = [row for row in report.rows + report.forward if not row.approximate]
            total = len(report.rows) + len(report.forward)
            lines = [f"{program.name}: {len(differ)} of {total} rows differ ({self.dtype})"]
            lines += [f"{row.line()} | relmaxdiff: {row.relmaxdiff:.3g} | target: {row.target} "
                      f"| reference: {row.reference}" for row in differ]
            raise SymderiveFailure("\n".join(lines))
