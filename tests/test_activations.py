"""The activations and losses of examples/activations: each checks (emitted NumPy and torch against
the oracle, finite differences and its declared torch reference, ``F.<op>``), and the named stable
functions keep forward and backward finite far out (float32 at +-100, float64 at +-800).

Example values are random normal (or uniform), which almost surely miss the kinks of Max, Min, Abs
and Heaviside, where the subgradient follows torch's convention (see symderive/ops.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from symderive.check import load_module, run_check
from symderive.derivation import derive_backward, load
from symderive.emit import module_source

FOLDER = Path(__file__).parent.parent / "examples" / "activations"
NAMES = sorted(p.stem for p in FOLDER.glob("*.py") if p.stem != "table")


@pytest.mark.parametrize("name", NAMES)
def test_activation_checks(name):
    program = load(FOLDER / f"{name}.py")
    report = run_check(program, "float64")
    assert report.ok, report
    labels = {row.reference for row in report.rows}
    declared = {label for _, label, _ in program.references}
    assert declared and declared <= labels, (declared, labels)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "logsigmoid", "silu", "mish",
                                  "bce_with_logits"])
@pytest.mark.parametrize(("dtype", "far"), [("float32", 100.0), ("float64", 800.0)])
def test_named_functions_are_stable_far_out(name, dtype, far):
    """Forward and backward finite, in both targets, at +-far and around 0."""
    program = load(FOLDER / f"{name}.py")
    derived = derive_backward(program)
    points = np.array([-far, -far / 2, -1.0, 0.0, 1.0, far / 2, far], dtype=dtype)
    for target in ("numpy", "torch"):
        module = load_module(module_source(program, derived, target), f"{name}_{target}_far")
        arrays = {}
        for x in program.inputs:
            shape = (len(points),) if x.name == "x" else (len(points),)
            arrays[x.name] = points if x.name == "x" else np.full(shape, 0.5, dtype=dtype)
        arrays = {k: v.reshape(len(points), 1) for k, v in arrays.items()}
        if target == "torch":
            arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
        values = module.forward(*arrays.values())
        upstream = [np.ones_like(np.asarray(values[name_]))
                    if target == "numpy" else torch.ones_like(values[name_])
                    for name_ in program.outputs]
        if program.loss:
            upstream = []
        grads = module.backward(values, *upstream)
        for label, value in list(values.items()) + list(grads.items()):
            value = np.asarray(value)
            assert np.isfinite(value).all(), (target, label, value)
            assert value.dtype == np.dtype(dtype), (target, label, value.dtype)
