"""The simplifier: inline a layer's atomic adjoint chain into one expression per materialised
gradient, then rewrite it with the named rules of ``rules.py`` in three phases (into irreducible
forward names, reduce to a fixpoint, fold back into saved names) and factor it for output. Every
rule application that changes the expression is kept as a ``Step(rule, before, after)``: the steps
are the derivation. ``sp.simplify`` is never called.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .grad import (
    ReversePass,
    adjoint_lhs,
    adjoint_name,
    backward,
    backward_program,
    contribution,
    upstream_adjoint,
)
from .ir import Assign, Program, name_of
from .rules import BASIS_RULES, OUTPUT_RULES, REDUCE_RULES, Context, factor, run_to_fixpoint
from .terms import expand, freshen, readable, to_expr


@dataclass(frozen=True)
class Step:
    """One rule application: the whole expression before and after it."""

    rule: str
    before: sp.Expr
    after: sp.Expr


@dataclass(frozen=True)
class Gradient:
    """A materialised adjoint: its compact expression and the steps that produced it."""

    name: str  # the forward name whose adjoint this is
    lhs: sp.Expr
    expr: sp.Expr
    steps: tuple[Step, ...]
    program: Program | None = field(default=None, compare=False, repr=False)  # for display

    def _repr_latex_(self) -> str:
        """The derivation of this gradient, a line per step, as Jupyter displays it."""
        from .api import display_math
        from .documents import gradient_latex

        if self.program is None:
            return f"$${sp.latex(self.expr)}$$"
        return display_math(gradient_latex(self, self.program))

    def uses(self, program: Program) -> list[str]:
        """The forward names (labels included) and then the adjoints the expression reads."""
        found = {name_of(x) for x in self.expr.atoms(sp.Indexed)}
        order = list(program.declared)
        return sorted(found, key=lambda name: (name not in order, order.index(name)
                                               if name in order else 0, name))

    def summary(self, program: Program) -> dict:
        """The fields of ``symderive derive --json``."""
        return {"wrt": self.name, "expr": str(self.expr), "ops": int(sp.count_ops(self.expr)),
                "reductions": len([x for x in sp.preorder_traversal(self.expr)
                                   if isinstance(x, sp.Sum)]),
                "steps": len(self.steps), "uses": self.uses(program)}


def simplify(expr: sp.Expr, context: Context) -> tuple[sp.Expr, list[Step]]:
    """Rewrite ``expr`` to its compact form; return it with the steps taken.

    >>> # see tests/test_simplify.py for cross-entropy, batchnorm and layernorm
    """
    steps: list[Step] = []

    def show(terms):
        return readable(to_expr(terms), context.names_for)

    def record(rule, before, after):
        shown = show(after)
        if shown != steps[-1].after:  # a change only of internal names is not a step to show
            steps.append(Step(rule.name, steps[-1].after, shown))

    expr = freshen(expr)  # copies of one adjoint share bound names; give each its own
    terms = expand(expr, context.nonnegative)
    start = readable(expr, context.names_for)
    steps.append(Step("distribute", start, show(terms)))
    terms = run_to_fixpoint(terms, context, BASIS_RULES, record)
    terms = run_to_fixpoint(terms, context, REDUCE_RULES, record)
    terms = run_to_fixpoint(terms, context, OUTPUT_RULES, record)
    result = readable(factor(terms, context), context.names_for)
    if result != steps[-1].after:
        steps.append(Step("factor", steps[-1].after, result))
    steps = [step for step in steps if step.before != step.after]
    return cheapest(start, steps)


def cheapest(start: sp.Expr, steps: list[Step]) -> tuple[sp.Expr, list[Step]]:
    """The cheapest form the derivation passed through, by ``sympy.count_ops``, the earliest of
    equally cheap ones (no steps that go round in a circle), and the steps that lead to it. Every form is equal to the start (each
    step is sound), so choosing among them is extraction, not a rewrite: rules may go through a
    larger form to reach a smaller one, but a result never costs more than the chain it came
    from (a distributed ``-a**2*da + da`` that no rule gathers again stays ``(1 - a**2)*da``)."""
    forms = [start] + [step.after for step in steps]
    costs = [sp.count_ops(form) for form in forms]
    best = min(range(len(forms)), key=lambda position: (costs[position], position))
    return forms[best], steps[:best]


def materialised(program: Program) -> list[str]:
    """The names whose adjoints the compact backward computes: the float inputs, plus any the
    program lists (layer boundaries)."""
    chosen = [] if isinstance(program.adjoints, str) else list(program.adjoints)
    return chosen + [x.name for x in program.inputs if not x.integer and x.name not in chosen]


def compact_gradients(program: Program) -> list[Gradient]:
    """Each materialised adjoint, with every other adjoint inlined, simplified."""
    context = Context(program)
    keep = set(materialised(program))
    walk = ReversePass(program)
    inlined: dict[str, sp.Expr] = {}  # a name's adjoint, over its axes, other adjoints inlined
    if not program.loss:  # a layer output's adjoint starts as its upstream adjoint
        inlined.update({name: adjoint_lhs(program, name) for name in program.outputs})
    # a kept name's adjoint as the chain rule writes it (a kept output's starts as its upstream)
    chained = {name: inlined[name] for name in inlined if name in keep}
    gradients = []
    for statement, used, active in walk:
        upstream = read = upstream_adjoint(program, statement)
        if statement.name in inlined and statement.name not in keep:
            upstream = _instantiate(inlined[statement.name], program, statement)
        for name in used if active else ():
            part = contribution(program, statement, name, context, upstream)
            if part != 0:
                inlined[name] = inlined.get(name, sp.S.Zero) + part
                walk.reached.add(name)
                if name in keep:
                    chained[name] = chained.get(name, sp.S.Zero) + (
                        part if read == upstream else
                        contribution(program, statement, name, context, read))
        gradients += [_simplified(name, inlined[name], chained[name], program, context)
                      for name in walk.visited(used) if name in keep]
    gradients += [_simplified(name, inlined[name], chained[name], program, context)
                  for name in walk.remaining() if name in keep]
    found = {g.name for g in gradients}
    # An input every contribution to which cancelled (b1 under batchnorm) has gradient 0; say so.
    gradients += [Gradient(x.name, adjoint_lhs(program, x.name), sp.S.Zero, (), program)
                  for x in program.inputs if x.name in keep and x.name not in found]
    return gradients


def _simplified(name: str, inlined: sp.Expr, chained: sp.Expr, program: Program,
                context: Context) -> Gradient:
    expr, steps = simplify(inlined, context)
    start = steps[0].before if steps else expr  # the inlined expression, as simplify showed it
    if start != chained:
        steps.insert(0, Step("inline", chained, start))
    return Gradient(name, adjoint_lhs(program, name), expr, tuple(steps), program)


def _instantiate(expr: sp.Expr, program: Program, statement: Assign) -> sp.Expr:
    """An inlined adjoint (written over its name's axes) read at the statement's lhs indices."""
    if not isinstance(statement.lhs, sp.Indexed):
        return expr
    return freshen(expr).xreplace(dict(zip(program.axes(statement.name), statement.lhs.indices)))


def compact_backward(program: Program) -> tuple[Program, list[Gradient]]:
    """The backward Program of the compact gradients, and the gradients with their steps."""
    gradients = compact_gradients(program)
    body = [Assign(g.lhs, g.expr) for g in gradients]  # a symbolic zero is kept: it is a result
    return backward_program(program, body, [g.name for g in gradients]), gradients


def derive_gradients(program: Program) -> list[Gradient]:
    """The gradients ``symderive derive`` prints: each float input's, simplified; for a program
    that asks for every adjoint (``adjoints="all"``), each input's atomic statements summed."""
    if program.adjoints != "all":
        return [g for g in compact_gradients(program) if program.input(g.name) is not None]
    atomic = backward(program)
    result = []
    for name in (n[1:] for n in atomic.outputs):
        if program.input(name) is not None:
            parts = [s for s in atomic.body if s.name == adjoint_name(name)]
            expr = sp.Add(*[s.rhs for s in parts])
            result.append(Gradient(name, parts[0].lhs, expr, (), program))
    return result
