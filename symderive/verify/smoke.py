"""Emitted modules always run: before ``emit`` or ``regen`` writes anything, every module it is about
to write is compiled, imported and run once on the derivation's example sizes (forward, backward and,
for torch, the ``autograd.Function`` forward and backward, and its derived double backward through
``create_graph``) in a child process, so a crash, a hang or
a stray print in generated code cannot touch the caller. A failure names the statement whose emitted
line failed; it is symderive's own bug (exit 3), except running out of memory (exit 2).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass

import sympy as sp

from ..program.ir import Program, ProgramError

TIMEOUT_SECONDS = 300


class EmissionError(RuntimeError):
    """Generated code that does not run: a bug of symderive, reported with the statement."""


@dataclass(frozen=True)
class Module:
    """One module about to be written: its program (for example shapes) and its source."""

    program: Program
    target: str
    source: str

    @property
    def label(self) -> str:
        return f"{self.program.name}_{self.target}"


def _concrete(program: Program, size: sp.Expr) -> int:
    return int(sp.sympify(size).subs(program.example_sizes()))


def _spec(module: Module) -> dict:
    """What the child needs to make example inputs: shapes, label ranges, upstream shapes."""
    program = module.program
    inputs = []
    for x in program.inputs:
        shape = [_concrete(program, s) for s in program.shape(x.name)] \
            if isinstance(x.lhs, sp.Indexed) else []
        inputs.append({"name": x.name, "shape": shape,
                       "classes": _concrete(program, x.classes) if x.integer else None,
                       "low": x.init.low if x.init else 0.0,
                       "high": x.init.high if x.init else 1.0,
                       "kind": x.init.kind if x.init else "normal"})
    upstream = [] if program.loss else [
        [_concrete(program, s) for s in program.shape(name)]
        if isinstance(program.lhs(name), sp.Indexed) else [] for name in program.outputs]
    return {"label": module.label, "target": module.target, "source": module.source,
            "inputs": inputs, "upstream": upstream, "loss": program.loss,
            "entry": program.name}


def verify(modules: list[Module]) -> None:
    """Run every module once in one child process; raise on the first that fails."""
    if not modules:
        return
    payload = json.dumps([_spec(m) for m in modules])
    try:
        result = subprocess.run([sys.executable, "-m", "symderive.verify.smoke"], input=payload,
                                capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                                check=False)
    except subprocess.TimeoutExpired as error:
        raise EmissionError(f"the emitted modules did not finish one run on the example sizes "
                            f"in {TIMEOUT_SECONDS} s") from error
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if report is None:
        raise EmissionError(f"the smoke run of the emitted modules died (exit {result.returncode}):"
                            f" {result.stderr.strip().splitlines()[-1:] or 'no output'}")
    if report["ok"]:
        return
    module = next(m for m in modules if m.label == report["label"])
    where = _statement_at(module, report["line"])
    message = (f"{module.label}.py: {report['phase']} fails on the example sizes"
               f"{' in ' + where if where else ''}: {report['error']}")
    if report["error"].startswith("MemoryError"):
        raise ProgramError(message + "; use smaller example sizes")
    raise EmissionError(message)


def _statement_at(module: Module, line: int | None) -> str | None:
    """The statement (forward or backward) whose emitted line is ``line``, quoted."""
    if not line:
        return None
    text = module.source.splitlines()[line - 1].strip()
    assigned = re.match(r"([A-Za-z_]\w*)(\[.*\])?\s*[-+]?=", text)
    if assigned is None:
        return f"line {line} '{text}'"
    name = assigned.group(1)
    for statement in module.program.body:
        if statement.name == name:
            return f"statement '{statement}' (emitted as '{text}')"
    if name.startswith("d") and name[1:] in module.program.names:
        return f"the adjoint of '{name[1:]}' (emitted as '{text}')"
    return f"line {line} '{text}'"


# -- the child ---------------------------------------------------------------------------------

def _run_one(spec: dict) -> None:
    import types

    import numpy as np

    module = types.ModuleType(spec["label"])
    exec(compile(spec["source"], spec["label"], "exec"), module.__dict__)  # noqa: S102
    generator = np.random.default_rng(0)
    arrays = []
    for x in spec["inputs"]:
        if x["classes"] is not None:
            arrays.append(generator.integers(0, x["classes"], x["shape"]))
        elif x["kind"] == "uniform":
            arrays.append(generator.uniform(x["low"], x["high"], x["shape"]))
        else:
            arrays.append(x["low"] + x["high"] * generator.standard_normal(x["shape"]))
    upstream = [generator.standard_normal(shape) for shape in spec["upstream"]]
    if spec["target"] == "numpy":
        values = module.forward(*arrays)
        module.backward(values, *upstream)
        return
    import torch

    tensors = [torch.from_numpy(np.asarray(a)) for a in arrays]
    grads = [torch.from_numpy(np.asarray(g)) for g in upstream]
    _phase[0] = "forward"
    values = module.forward(*tensors)
    _phase[0] = "backward"
    module.backward(values, *grads)
    _phase[0] = "the autograd Function"
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    outputs = getattr(module, spec["entry"])(*leaves)
    outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
    torch.autograd.backward(outputs, grads or None)
    if hasattr(module, "double_backward"):  # the derived double backward, through create_graph
        _phase[0] = "the double backward"
        outputs = getattr(module, spec["entry"])(*leaves)
        outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
        floats = [leaf for leaf in leaves if leaf.requires_grad]
        first = torch.autograd.grad(outputs, floats, grads or None, create_graph=True,
                                    allow_unused=True)
        first = [g for g in first if g is not None and g.requires_grad]
        if first:
            torch.autograd.backward(first, [torch.ones_like(g) for g in first])


_phase = ["forward"]


def _child() -> int:
    import contextlib
    import traceback

    specs = json.loads(sys.stdin.read())
    for spec in specs:
        _phase[0] = "forward"
        try:
            with contextlib.redirect_stdout(sys.stderr):  # generated code must not print to us
                _run_one(spec)
        except BaseException as error:  # noqa: BLE001 - every failure is reported, not raised
            frames = [f for f in traceback.extract_tb(error.__traceback__)
                      if f.filename == spec["label"]]
            line = frames[-1].lineno if frames else None
            function = frames[-1].name if frames else None
            phase = _phase[0] if function not in ("forward", "backward") or \
                _phase[0] in ("the autograd Function", "the double backward") else function
            print(json.dumps({"ok": False, "label": spec["label"], "phase": phase, "line": line,
                              "error": f"{type(error).__name__}: {error}"}))
            return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
