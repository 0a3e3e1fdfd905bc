"""The pytest plugin: ``pytest --symderive`` checks every derivation of a project as test items.

Registered through the ``pytest11`` entry point, so installing symderive is enough. With
``--symderive``, each derivation file of the project (``derivations/*.py``, or the folders that
``[tool.symderive]`` in the project's pyproject.toml names: keys ``derivations`` and
``generated``) is collected as five items:

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

from .program.errors import ProgramError
from .project import find_root, project_folders

DTYPES = ("float64", "float32")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("symderive", "symderive derivations")
    group.addoption("--symderive", action="store_true", default=False,
                    help="collect every derivation of the project as test items: generated "
                    "files current, check in float64 and float32")
    group.addoption("--symderive-seed", type=int, default=0, metavar="N",
                    help="the seed of the checks' example values (default 0)")


def _project(config: pytest.Config) -> tuple[Path, Path, Path]:
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
    # the items derive, emit and check (SymPy, torch): loaded only when --symderive asks for
    # them, since pytest loads this plugin in every run of every project
    from .plugin_items import DerivationFile

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
