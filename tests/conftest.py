"""Shared fixtures: the project root and the makemore derivation, loaded once per session."""
from pathlib import Path

import pytest

from symderive.derivation import load

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def makemore():
    return load(ROOT / "derivations" / "makemore_mlp.py")
