"""The double backward: a backward is itself a program, so it is differentiated again by the same
machinery. ``gradient_program`` writes a forward and its backward as one Program whose inputs are
the forward's inputs and the upstream adjoints, whose body is the forward statements the gradients
read followed by the backward's statements, and whose outputs are the input gradients; first-order
adjoints are renamed ``grad_<name>`` so that its own adjoints (``dgrad_<name>``, ``d<input>``)
keep the usual names. ``derive_double`` returns that program with its compact backward, or the
reason it cannot be derived, in which case the emitted Function stays once differentiable.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace

import sympy as sp

from ..program.ir import Assign, Input, Program, ProgramError, idx_size, name_of, normal
from ..program.names import GRADIENT_PREFIX, emitted_names
from ..program.validate import Checker
from .simplify import compact_backward, cycle_collection_paused

PREFIX = GRADIENT_PREFIX  # validation refuses forward names that clash with what it makes


@dataclass(frozen=True)
class Double:
    """A derivation's gradients as a program (``program``) and that program's compact backward
    (``backward``); ``upstream`` maps each upstream adjoint of the forward (``dhpreact``) to its
    name there (``grad_hpreact``)."""

    program: Program
    backward: Program
    upstream: tuple[tuple[str, str], ...]

    def first_order(self, name: str) -> str:
        """The gradient program's name for the first-order adjoint ``d<name>``."""
        return PREFIX + name


def _renamed(expr: sp.Expr, names: dict[str, str], indices: dict) -> sp.Expr:
    expr = expr.xreplace(indices) if indices else expr
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and name_of(e) in names,
                        lambda e: sp.IndexedBase(names[name_of(e)])[e.indices])
    return expr.xreplace({s: sp.Symbol(names[s.name]) for s in expr.atoms(sp.Symbol)
                          if not isinstance(s, sp.Dummy) and s.name in names})


def _index_names(program: Program) -> dict[str, sp.Expr]:
    found: dict[str, sp.Expr] = {}
    for expr in [x.lhs for x in program.inputs] + [e for s in program.body for e in (s.lhs, s.rhs)]:
        for k in expr.atoms(sp.Idx):
            found.setdefault(str(k), idx_size(k))
    return found


def _distinct_indices(forward: Program, statements) -> dict:
    """Renames for the backward's indices whose names the forward, or an earlier backward
    statement, uses for another range (the backward binds ``k`` over ``n`` where the forward's
    ``k`` ranges over ``B*E``; batchnorm's adjoint sums ``k`` over the batch and a matmul's
    adjoint after it ``k`` over the features): one program must not hold two indices that print
    alike."""
    taken = _index_names(forward)
    mapping = {}
    for s in statements:
        for k in sorted(s.lhs.atoms(sp.Idx) | s.rhs.atoms(sp.Idx), key=str):
            if k in mapping:
                continue
            if str(k) not in taken:
                taken[str(k)] = idx_size(k)  # the first range of this label keeps it
                continue
            if sp.expand(taken[str(k)] - idx_size(k)) == 0:
                continue
            name = next(f"{k}{n}" for n in itertools.count(2) if f"{k}{n}" not in taken)
            taken[name] = idx_size(k)
            mapping[k] = sp.Idx(name, idx_size(k))
    return mapping


def gradient_program(forward: Program, backward: Program) -> tuple[Program, dict[str, str]]:
    """The forward's input gradients as a program of its inputs and upstream adjoints (see the
    module docstring), checked; and the renames of the upstream adjoints. Only the forward
    statements the gradients read are kept (a loss the gradients do not read is not computed)."""
    upstream = [x for x in backward.inputs if x.name not in forward.names]
    names = {s.name: PREFIX + s.name[1:] for s in backward.body}
    names |= {x.name: PREFIX + x.name[1:] for x in upstream}
    taken = emitted_names(forward)
    clash = sorted(set(names.values()) & taken)
    if clash:
        raise ProgramError(f"{forward.name}: the gradient program names the first-order adjoint "
                           f"{clash[0]}, which the forward already uses")
    indices = _distinct_indices(forward, backward.body)
    statements, reads = [], dict(names)
    given = {x.name for x in upstream}
    for s in backward.body:
        rhs = _renamed(s.rhs, reads, indices)
        if s.name in given:  # an output read later: its upstream adjoint gains terms. The input
            # keeps its name; the sum is a new name, read from here on
            fresh = next(f"{names[s.name]}_{n}" for n in itertools.count(2)
                         if f"{names[s.name]}_{n}" not in taken | set(reads.values()))
            lhs = _renamed(s.lhs, reads, indices)
            rhs = lhs + rhs if s.accumulate else rhs  # += reads the value before the update
            reads[s.name] = fresh
            statements.append(Assign(_renamed(s.lhs, reads, indices), rhs, False))
            continue
        statements.append(Assign(_renamed(s.lhs, reads, indices), rhs, s.accumulate))
    floats = {x.name for x in forward.inputs if not x.integer}
    outputs = [reads[adjoint] for adjoint in backward.outputs if adjoint[1:] in floats]
    live, body = set(outputs), []
    for statement in reversed(list(forward.body) + statements):
        if statement.name in live:
            body.append(statement)
            live |= {name_of(x) for x in statement.rhs.atoms(sp.Indexed)}
            live |= {x.name for x in statement.rhs.atoms(sp.Symbol)}
    body.reverse()
    inputs = tuple(forward.inputs) + tuple(Input(_renamed(x.lhs, names, {}), normal(1.0)) for x in upstream)
    program = replace(forward, name=forward.name + "_backward", inputs=inputs, body=tuple(body),
                      outputs=tuple(outputs), loss=False, adjoints="inputs",
                      declared=tuple(x.name for x in inputs) + tuple(dict.fromkeys(
                          s.name for s in body)), references=(), latex_names=())
    Checker(program, double=False).run()  # no triple backward; its name is no entry point
    return program, {x.name: names[x.name] for x in upstream}


@functools.lru_cache(maxsize=64)
def derive_double(forward: Program, backward: Program) -> Double | str:
    """The gradient program and its compact backward, or why the double backward of ``forward``
    cannot be derived (one sentence; the Function then refuses double backward with it)."""
    if forward.adjoints == "all":
        return f"{forward.name} asks for every adjoint (adjoints='all'), not a compact backward"
    if not forward.double:
        return f"{forward.name} asks for no double backward (double=False)"
    try:
        with cycle_collection_paused():  # (see there: the program builds, checks and derives)
            program, upstream = gradient_program(forward, backward)
            if not program.outputs:
                return f"{forward.name} has no float input to differentiate twice"
            second = compact_backward(program, inline_steps=False)[0]
    except ProgramError as error:
        return f"the backward of {forward.name}'s backward cannot be derived: {error}"
    except Exception as error:  # noqa: BLE001 - a gap of the machinery: refuse, never guess
        return (f"the backward of {forward.name}'s backward cannot be derived "
                f"({type(error).__name__}: {error})")
    return Double(program, second, tuple(upstream.items()))


__all__ = ["PREFIX", "Double", "derive_double", "gradient_program"]
