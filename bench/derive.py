"""Derivation time: derive + emit of a tanh + batchnorm MLP as it doubles in depth (linear scaling
gives a ratio of 2 per doubling; the goal is at most 2.2 from depth 8 to 16), derive + emit of a
long elementwise chain (goal: 300 statements under 10 s, the double backward that emission
derives included), every derivation file of the project against issue 10's
budget of one second, and the derivations against SymPy's own ``diff`` of the same forward, fully
inlined (SymPy's result is the unsimplified KroneckerDelta sum; ours is the compact form, so that
ratio is the price of the rules). SymPy's cache is cleared before each measurement, so every
number is a cold derivation as ``symderive derive`` makes it."""
from __future__ import annotations

import statistics

import sympy as sp
from sympy.core.cache import clear_cache

from symderive.api import derive, emit
from symderive.program.load import load
from symderive.program.ir import name_of

from .programs import tanh_batchnorm_mlp, tanh_chain
from .timing import ROOT, Row, seconds, threads

FOLDERS = ("derivations", "examples/activations", "examples/layers")


def cold_seconds(function, repeat: int = 1) -> float:
    samples = []
    for _ in range(repeat):
        clear_cache()
        samples.append(seconds(function))
    return statistics.median(samples)


def derive_and_emit(program) -> tuple[float, float]:
    """(derive seconds, derive + emit seconds): the compact backward with its steps, then the
    torch module (which derives the backward it emits)."""
    derived = cold_seconds(lambda: derive(program), 3)  # seconds at most: the median of three
    emitted = cold_seconds(lambda: emit(program, "torch"))
    return derived, emitted


def _row(case: str, shape: str, baseline: str, ours: float, theirs: float, note: str = "") -> Row:
    return Row(case, shape, "symbolic", threads(), baseline, ours / theirs, ours, theirs,
               note=note)


def depth_rows(depths) -> list[Row]:
    rows, previous = [], None
    for depth in depths:
        program = tanh_batchnorm_mlp(depth)
        derived, emitted = derive_and_emit(program)
        shape = f"depth={depth} ({len(program.body)} statements)"
        if previous is None:
            rows.append(_row("derive+emit tanh+batchnorm MLP", shape, "1 s budget", emitted, 1.0))
            rows.append(_row("derive tanh+batchnorm MLP", shape, "1 s budget", derived, 1.0))
        else:
            half, half_derived, half_depth = previous
            rows.append(_row("derive+emit tanh+batchnorm MLP", shape, f"depth {half_depth}",
                             emitted, half, "linear scaling is 2.0; goal 16 vs 8 <= 2.2"))
            rows.append(_row("derive tanh+batchnorm MLP", shape, f"depth {half_depth}",
                             derived, half_derived, "linear scaling is 2.0"))
        previous = (emitted, derived, depth)
    return rows


def chain_rows(length: int, budget: float) -> list[Row]:
    """Derive + emit of the chain (emission derives the backward's own backward too) against the
    goal and against half the chain (linear scaling gives 2.0); the deriver alone the same two
    ways."""
    derived, emitted = derive_and_emit(tanh_chain(length))
    half_derived, half_emitted = derive_and_emit(tanh_chain(length // 2))
    shape, half = f"{length} statements", f"{length // 2} statements"
    return [_row("derive+emit tanh chain", shape, f"{budget:g} s goal", emitted, budget),
            _row("derive+emit tanh chain", shape, half, emitted, half_emitted,
                 "linear scaling is 2.0"),
            _row("derive tanh chain", shape, f"{budget:g} s goal", derived, budget),
            _row("derive tanh chain", shape, half, derived, half_derived,
                 "linear scaling is 2.0")]


def file_rows(folders, repeat: int) -> list[Row]:
    """Every derivation file's derive time against issue 10's budget of one second."""
    rows = []
    for folder in folders:
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.stem.startswith("_") or path.stem == "table":
                continue
            try:
                program = load(path)
            except Exception as error:  # not a derivation file, or one broken right now
                rows.append(Row(f"derive {folder}/{path.name}", "-", "symbolic", threads(),
                                "1 s budget (issue 10)", None, available=False,
                                note=f"{type(error).__name__}: {str(error)[:120]}"))
                continue
            took = cold_seconds(lambda program=program: derive(program), repeat)
            rows.append(_row(f"derive {folder}/{path.name}", f"{len(program.body)} statements",
                             "1 s budget (issue 10)", took, 1.0))
    return rows


def inlined_output(program) -> sp.Expr:
    """The output written in terms of the inputs alone, as SymPy alone would see the layer."""
    expr = program.lhs(program.outputs[0])
    for statement in reversed(program.body):
        mapping = {}
        for read in expr.atoms(sp.Indexed):
            if name_of(read) == statement.name:
                mapping[read] = statement.rhs.xreplace(dict(zip(statement.lhs.indices, read.indices)))
        expr = expr.xreplace(mapping) if mapping else expr
        if isinstance(statement.lhs, sp.Symbol) and expr == statement.lhs:
            expr = statement.rhs
    return expr


def sympy_diff(program):
    out = inlined_output(program)
    return [sp.diff(out, sp.IndexedBase(x.name)[tuple(sp.Idx(f"{k}_", k.upper + 1)
                                                      for k in x.indices)])
            for x in program.inputs if not x.integer]


def sympy_rows(names, repeat: int) -> list[Row]:
    rows = []
    for name in names:
        program = load(ROOT / "derivations" / f"{name}.py")
        ours = cold_seconds(lambda: derive(program), repeat)
        theirs = cold_seconds(lambda: sympy_diff(program), repeat)
        rows.append(_row(f"derive derivations/{name}.py", f"{len(program.body)} statements",
                         "sympy.diff (inlined, unsimplified)", ours, theirs))
    return rows


def cases(quick: bool, repeat: int) -> list:
    if quick:
        return [("derive depth", lambda: depth_rows((1, 2))),
                ("derive chain", lambda: chain_rows(30, 10.0)),
                ("derive files", lambda: file_rows(FOLDERS[:1], 1))]
    return [("derive depth", lambda: depth_rows((1, 2, 4, 8, 16))),
            ("derive chain", lambda: chain_rows(300, 10.0)),
            ("derive files", lambda: file_rows(FOLDERS, 3)),
            ("derive vs sympy", lambda: sympy_rows(
                ("cross_entropy", "batchnorm", "batchnorm_biased", "layernorm"), 3))]
