"""Stabilising rewrites of a program before it is lowered, as PyTensor's ``stabilize`` phase: each
is named, states its side condition and checks it on the program, and is recorded as a ``Step``.
``log of exp`` folds an exponential under a logarithm through the names that carry it:
``logprobs = log(probs)`` with ``probs = counts*counts_sum_inv``, ``counts = exp(norm_logits)``
and ``counts_sum_inv = counts_sum**-1`` becomes ``norm_logits - log(counts_sum)``, finite where
``probs`` underflows to 0 (logits of +-1000). ``read through map`` reads an elementwise definition
at a label's entries instead of the whole array (``log(probs)[i, Y[i]]`` -> ``log(probs[i, Y[i]])``),
so a loss that reads n entries computes n values."""
from __future__ import annotations

from dataclasses import replace

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from ..program.ir import Assign, Program, free_indices
from ..program.recognise import RULES as RECOGNITIONS
from ..program.signs import nonnegative, program_signs
from .simplify import Step


def _elementwise(statement: Assign) -> bool:
    """A definition whose value at each index reads only that index: no reduction, no delta,
    its lhs indexed by distinct plain indices."""
    lhs = statement.lhs
    if statement.accumulate or not isinstance(lhs, sp.Indexed):
        return False
    indices = lhs.indices
    return all(isinstance(k, sp.Idx) for k in indices) and len(set(indices)) == len(indices) \
        and not statement.rhs.has(ExprWithLimits, sp.KroneckerDelta) \
        and set(free_indices(statement.rhs)) <= set(indices)


class _Program:
    """The definitions of a program by name, and the signs it establishes."""

    def __init__(self, program: Program):
        self.definitions = {s.name: s for s in program.body if not s.accumulate}
        assigned = [s.name for s in program.body]
        self.once = {name for name in assigned if assigned.count(name) == 1}
        # a name updated after it is first defined (``da += ...``, an upstream adjoint added
        # to) may hold another value where the read is: a definition reading it is not unfolded
        self.changing = {name for name in assigned if name not in self.once} | {
            x.name for x in program.inputs if x.name in assigned}
        self.signs = program_signs(program)
        # the functions the program is written with: what SymPy's own evaluation adds when a
        # definition is read through (Abs(exp(u)) is exp(re(u)) for complex u) has no spelling
        self.functions = {type(f) for s in program.body for f in s.rhs.atoms(sp.Function)}

    def unfolded(self, read: sp.Indexed) -> sp.Expr | None:
        """The elementwise definition of ``read``'s name at ``read``'s indices."""
        name = str(read.base.label)
        statement = self.definitions.get(name)
        if statement is None or name not in self.once or not _elementwise(statement):
            return None
        reads = {str(r.base.label) for r in statement.rhs.atoms(sp.Indexed)} | {
            x.name for x in statement.rhs.atoms(sp.Symbol)}
        if reads & self.changing:
            return None
        return statement.rhs.xreplace(dict(zip(statement.lhs.indices, read.indices)))


def _log_terms(expr: sp.Expr, known: _Program, power=sp.S.One):
    """``log(expr)`` as ``(sum of terms, folded)``: ``expr`` split into factors through the
    names that define it as a product, power or exponential; ``folded`` counts the exponentials
    taken out. None where a factor is not established non-negative (the side condition)."""
    if isinstance(expr, sp.exp):
        return power * expr.args[0], 1
    if isinstance(expr, sp.Mul):
        total, folded = sp.S.Zero, 0
        for factor in expr.args:
            found = _log_terms(factor, known, power)
            if found is None:
                return None
            total, folded = total + found[0], folded + found[1]
        return total, folded
    if isinstance(expr, sp.Pow) and expr.exp.is_real and expr.exp.is_number:
        return _log_terms(expr.base, known, power * expr.exp)
    if isinstance(expr, sp.Indexed):
        inner = known.unfolded(expr)
        if inner is not None and isinstance(inner, (sp.Mul, sp.Pow, sp.exp)):
            found = _log_terms(inner, known, power)
            if found is not None and found[1]:
                return found
    if expr.is_Number and expr.is_positive:
        return power * sp.log(expr), 0
    if not nonnegative(expr, known.signs):
        return None
    return power * sp.log(expr), 0


def log_of_exp(expr: sp.Expr, known: _Program) -> sp.Expr:
    """Every ``log(a*b**k*...)`` whose factors, through their definitions, include an ``exp``:
    ``log(exp(u)*s**-1) -> u - log(s)``. Side condition: every factor non-negative (established
    by the program), so that ``log`` of the product is the sum of the logs of its factors."""
    def rewrite(node):
        found = _log_terms(node.args[0], known)
        return found[0] if found is not None and found[1] else node
    return expr.replace(lambda e: isinstance(e, sp.log), rewrite)


def read_through_map(expr: sp.Expr, known: _Program) -> sp.Expr:
    """A read at a label's entries (``logprobs[i, Y[i]]``) of an elementwise definition replaced
    by the definition at those entries; the values are the same, computed on fewer entries."""
    mapping = {}
    for read in expr.atoms(sp.Indexed):
        if any(isinstance(k, sp.Expr) and k.has(sp.Indexed) for k in read.indices):
            inner = known.unfolded(read)
            if inner is not None:
                mapping[read] = inner
    return expr.xreplace(mapping) if mapping else expr


# reads first, so a log a loss reads at a label is folded where it is read
RULES = (("read through map", read_through_map), ("log of exp", log_of_exp))
CONDITIONS = {
    "read through map": "the definition is elementwise and reads no name updated after it, so "
                        "its value at the label's entries is the entries of its value",
    "log of exp": "every factor is non-negative (established by the program), so the log of "
                  "the product is the sum of the logs of its factors",
}


def stabilized(program: Program) -> tuple[Program, tuple[tuple[str, Step], ...]]:
    """``program`` with the stabilising rewrites applied to each statement, and the steps taken
    as ``(statement name, Step)``."""
    known = _Program(program)
    body, steps = [], []
    for statement in program.body:
        rhs = statement.rhs
        # again while a rule fires: a folded log reads names (``norm_logits[i, Y[i]]``) that a
        # label read then takes through their maps; each unfolds only earlier definitions
        for _ in range(4):
            before = rhs
            for rule, rewrite in RULES:
                after = rewrite(rhs, known)
                # a value SymPy evaluates to a constant once read through (sign(exp(u)) is 1)
                # would leave the statement with no array to take its shape, dtype and device
                # from: keep reading the array
                if after != rhs and (after.has(sp.Indexed) or not rhs.has(sp.Indexed)) \
                        and {type(f) for f in after.atoms(sp.Function)} <= known.functions:
                    steps.append((statement.name, Step(rule, rhs, after)))
                    rhs = after
            if rhs == before:
                break
        body.append(replace(statement, rhs=rhs) if rhs is not statement.rhs else statement)
    if not steps:
        return program, ()
    return replace(program, body=tuple(body)), tuple(steps)


def forward_rewrites(program: Program) -> list[tuple[str, str, sp.Expr, sp.Expr, str]]:
    """Every rewrite the forward goes through before it is emitted, as ``(statement, rule, before,
    after, side condition)``: the recognitions of written-out stable functions made when the
    program was built (``program.recognise``), then the stabilising rewrites above."""
    conditions = {rule.name: rule.condition for rule in RECOGNITIONS} | CONDITIONS
    found = [(r.statement, r.rule, r.before, r.after, conditions[r.rule])
             for r in program.rewrites]
    found += [(name, step.rule, step.before, step.after, conditions[step.rule])
              for name, step in stabilized(program)[1]]
    return found


__all__ = ["CONDITIONS", "RULES", "forward_rewrites", "log_of_exp", "read_through_map",
           "stabilized"]
