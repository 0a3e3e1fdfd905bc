"""Shared fixtures: the project root and the makemore derivation, loaded once per session; and the
hypothesis profiles of the property tests: "ci" (the default: at least 300 examples from a fixed
seed) and "long" (3000 random ones), chosen by SYMDERIVE_FUZZ=long."""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from symderive.program.load import load

ROOT = Path(__file__).resolve().parent.parent

# An example runs the whole pipeline twice (seconds, not milliseconds): no deadline, no health
# check for slow generation. "ci" is derandomized so a run is reproducible; "long" explores.
_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=300, derandomize=True, **_FUZZ)
settings.register_profile("long", max_examples=3000, derandomize=False, print_blob=True, **_FUZZ)
settings.load_profile(os.environ.get("SYMDERIVE_FUZZ", "ci"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def makemore():
    return load(ROOT / "derivations" / "makemore_mlp.py")
