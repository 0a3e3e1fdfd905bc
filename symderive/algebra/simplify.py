"""The simplifier: inline a layer's atomic adjoint chain into one expression per materialised
gradient, then rewrite it with the named rules (``rules``) in three phases (into irreducible
forward names, reduce to a fixpoint, fold back into saved names) and factor it for output. Every
rule application that changes the expression is kept as a ``Step(rule, before, after)``: the steps
are the derivation. ``sp.simplify`` is never called.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field

import sympy as sp

from ..program.ir import Assign, Program, name_of
from .cost import large_sizes, operation_count
from .factoring import factor, gather
from .grad import (
    ReversePass,
    adjoint_lhs,
    adjoint_name,
    backward,
    backward_program,
    contribution,
    upstream_adjoint,
)
from .materialise import INLINE_TERMS, Choice, by_cost, wider_inlined
from .output import OUTPUT_RULES
from .reduction import BASIS_RULES, REDUCE_RULES, Context, run_to_fixpoint
from .terms import expand, expanded_size, freshen, readable, renamed, to_expr


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
    choice: Choice | None = field(default=None, compare=False)  # why an intermediate is named

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


def simplify(expr: sp.Expr, context: Context, shown: bool = True) -> tuple[sp.Expr, list[Step]]:
    """Rewrite ``expr`` to its compact form; return it with the steps taken. With ``shown``
    False (a caller that keeps only the result: the emitted backward, the double backward) the
    forms a step passes through are compared as they are, and only the result gets readable
    index names: naming every form is a fifth of a large derivation's time.

    >>> # see tests/test_simplify.py for cross-entropy, batchnorm and layernorm
    """
    steps: list[Step] = []

    def named(form):
        return readable(form, context.names_for) if shown else form

    def show(terms):
        return named(to_expr(terms))

    def record(rule, before, after):
        shown = show(after)
        if shown != steps[-1].after:  # a change only of internal names is not a step to show
            steps.append(Step(rule.name, steps[-1].after, shown))

    expr = freshen(expr)  # copies of one adjoint share bound names; give each its own
    terms = expand(expr, context.nonnegative)
    start = named(expr)
    steps.append(Step("distribute", start, show(terms)))
    terms = run_to_fixpoint(terms, context, BASIS_RULES, record)
    terms = run_to_fixpoint(terms, context, REDUCE_RULES, record)
    terms = run_to_fixpoint(terms, context, OUTPUT_RULES, record)
    result = named(factor(terms, context))
    if result != steps[-1].after:
        steps.append(Step("factor", steps[-1].after, result))
    gathered = named(gather(terms, context))
    if operations(gathered) < operations(steps[-1].after):
        steps.append(Step("gather", steps[-1].after, gathered))
    steps = [step for step in steps if step.before != step.after]
    best, steps = cheapest(start, steps)
    return (best if shown else readable(best, context.names_for)), steps


def operations(expr: sp.Expr) -> int:
    """``sympy.count_ops``, remembered per subtree (``cost.operation_count``): each form is costed
    when chosen among and again when the derivation's cheapest form is extracted."""
    return operation_count(expr)


def cheapest(start: sp.Expr, steps: list[Step]) -> tuple[sp.Expr, list[Step]]:
    """The cheapest form the derivation passed through, by ``sympy.count_ops``, the earliest of
    equally cheap ones (no steps that go round in a circle), and the steps that lead to it. Every form is equal to the start (each
    step is sound), so choosing among them is extraction, not a rewrite: rules may go through a
    larger form to reach a smaller one, but a result never costs more than the chain it came
    from (a distributed ``-a**2*da + da`` that no rule gathers again stays ``(1 - a**2)*da``)."""
    forms = [start] + [step.after for step in steps]
    costs = [operations(form) for form in forms]
    best = min(range(len(forms)), key=lambda position: (costs[position], position))
    return forms[best], steps[:best]


def materialised(program: Program) -> list[str]:
    """The names whose adjoints the compact backward computes: the float inputs, plus any the
    program lists (layer boundaries)."""
    chosen = [] if isinstance(program.adjoints, str) else list(program.adjoints)
    return chosen + [x.name for x in program.inputs if not x.integer and x.name not in chosen]


@contextmanager
def cycle_collection_paused():
    """Python's cycle collector paused for the block (restored after, as it was). A derivation
    allocates millions of small SymPy objects, freed by reference counting (they hold no
    cycles), and the collector's full passes walk every object alive, the caches that remember
    forms included: their number grows with the program, so with the collector running a
    derivation of twice the statements took more than twice as long (the tanh+batchnorm MLP
    at depth 16 against 8; a third of the time of a 300-statement chain's double backward).
    What is computed does not depend on when garbage is collected."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def compact_gradients(program: Program, inline_steps: bool = True) -> list[Gradient]:
    """Each materialised adjoint, with every other adjoint inlined, simplified. With
    ``inline_steps=False`` the steps start at the inlined expression, without the chain-rule
    ``inline`` step before it (whose contributions are computed again just to be shown): for
    callers that keep only the backward program; the expressions are the same.

    Inlining stops where it would multiply work (``materialise_instead``): an adjoint whose
    inlined form would put more arrays under one contraction than reading it as a name does is
    materialised too, decided during the walk, as soon as that adjoint is complete."""
    with cycle_collection_paused():
        return _compact_gradients(program, inline_steps)


def _compact_gradients(program: Program, inline_steps: bool) -> list[Gradient]:
    context = Context(program)
    keep = set(materialised(program))
    walk = ReversePass(program)
    defining = {statement.name: statement for statement in program.body}
    inlined: dict[str, sp.Expr] = {}  # a name's adjoint, over its axes, other adjoints inlined
    if not program.loss:  # a layer output's adjoint starts as its upstream adjoint
        inlined.update({name: adjoint_lhs(program, name) for name in program.outputs})
    # per name, how the chain rule writes each contribution: (part, statement, read, upstream)
    sources: dict[str, list[tuple[sp.Expr, Assign, sp.Expr, sp.Expr]]] = {}
    prepared: dict[str, tuple[sp.Expr, dict[str, sp.Expr]]] = {}  # contributions already made
    choices: dict[str, Choice | None] = {}  # the intermediates named by cost, and why
    sizes = large_sizes(program)
    gradients = []

    def simplified(expr: sp.Expr) -> sp.Expr:
        return simplify(expr, context, shown=False)[0]

    made: dict = {}  # the contributions made so far: the choices and the walk ask for some twice

    def contribute(statement: Assign, name: str, upstream: sp.Expr) -> sp.Expr:
        key = (id(statement), name, upstream)
        if key not in made:
            made[key] = contribution(program, statement, name, context, upstream)
        return made[key]

    def chained(name: str) -> sp.Expr:
        """A kept name's adjoint as the chain rule writes it (a kept output's starts as its
        upstream): each contribution read through the adjoints it came from."""
        total = adjoint_lhs(program, name) if not program.loss and name in program.outputs \
            else sp.S.Zero
        for part, statement, read, upstream in sources.get(name, ()):
            total += part if read == upstream else contribute(statement, name, read)
        return total

    def complete(name: str) -> None:
        if name not in keep and name in defining and \
                expanded_size(inlined[name]) > INLINE_TERMS:
            keep.add(name)  # inlining further would distribute into ever more terms
            choices[name] = Choice("terms", ())
        elif name not in keep and name in defining:
            upstream = _instantiate(inlined[name], program, defining[name])
            choice, parts = wider_inlined(program, defining[name], context, upstream,
                                          simplified, contribute)
            if choice is None:
                choice = by_cost(program, defining[name], context, upstream, simplified, sizes,
                                 contribute)
            if choice is not None:
                keep.add(name)
                choices[name] = choice
                if choice.kept_inlined:
                    prepared[name] = (upstream_adjoint(program, defining[name]),
                                      choice.kept_inlined)
            else:
                prepared[name] = (upstream, parts)
        if name in keep:
            gradients.append(_simplified(name, inlined[name],
                                         chained(name) if inline_steps else None, program,
                                         context, choices.get(name)))

    for statement, used, active in walk:
        upstream = read = upstream_adjoint(program, statement)
        parts: dict[str, sp.Expr] = {}
        if statement.name in prepared:
            upstream, parts = prepared.pop(statement.name)
        elif statement.name in inlined and statement.name not in keep:
            upstream = _instantiate(inlined[statement.name], program, statement)
        for name in used if active else ():
            part = parts[name] if name in parts else contribute(statement, name, upstream)
            if part != 0:
                inlined[name] = inlined.get(name, sp.S.Zero) + part
                walk.reached.add(name)
                sources.setdefault(name, []).append((part, statement, read, upstream))
        for name in walk.visited(used):
            complete(name)
    gradients += [_simplified(name, inlined[name], chained(name) if inline_steps else None,
                              program, context)
                  for name in walk.remaining() if name in keep]
    found = {g.name for g in gradients}
    # An input every contribution to which cancelled (b1 under batchnorm) has gradient 0; say so.
    gradients += [Gradient(x.name, adjoint_lhs(program, x.name), sp.S.Zero, (), program)
                  for x in program.inputs if x.name in keep and x.name not in found]
    return gradients


def _simplified(name: str, inlined: sp.Expr, chained: sp.Expr | None, program: Program,
                context: Context, choice: Choice | None = None) -> Gradient:
    expr, steps = simplify(inlined, context, shown=chained is not None)
    start = steps[0].before if steps else expr  # the inlined expression, as simplify showed it
    if chained is not None and start != chained:
        steps.insert(0, Step("inline", chained, start))
    return Gradient(name, adjoint_lhs(program, name), expr, tuple(steps), program, choice)


def _instantiate(expr: sp.Expr, program: Program, statement: Assign) -> sp.Expr:
    """An inlined adjoint (written over its name's axes) read at the statement's lhs indices."""
    if not isinstance(statement.lhs, sp.Indexed):
        return expr
    return renamed(freshen(expr), dict(zip(program.axes(statement.name), statement.lhs.indices)))


def compact_backward(program: Program, inline_steps: bool = True
                     ) -> tuple[Program, list[Gradient]]:
    """The backward Program of the compact gradients, and the gradients with their steps
    (``inline_steps``: see ``compact_gradients``)."""
    gradients = compact_gradients(program, inline_steps)
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


def derive_backward(program: Program) -> Program:
    """The backward Program ``program`` asks for: every adjoint, one statement per dependency
    (``adjoints="all"``, makemore's exercise 1), or only the materialised adjoints, simplified."""
    if program.adjoints == "all":
        return backward(program)

    return compact_backward(program, inline_steps=False)[0]  # the program only: no steps shown
