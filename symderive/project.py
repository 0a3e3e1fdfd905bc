"""A project's folders: its root is the nearest folder at or above a start that holds
``derivations/`` or a ``pyproject.toml`` with ``[tool.symderive]`` (a configured folder further up
wins over a bare ``derivations/`` inside its project), whose keys ``derivations`` and ``generated``
name the folders; a derivation's origin, as a generated header names it, is its path relative
to that root.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from .codegen.files import checked_origin
from .program.errors import ProgramError

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
