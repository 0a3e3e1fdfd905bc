"""The reverse pass as a program transform: walk the forward body backwards, and for every value
each statement reads emit the adjoint contribution ``d<name>[axes] (+)= Sum(d<lhs> * d(rhs)/d(name))``
with the deltas contracted, skipping symbolic zeros and accumulating fan-out. The result is another
``Program`` whose inputs are the forward values (and upstream adjoints) it reads, so lowering and
emission treat forward and backward alike.
"""
from __future__ import annotations

import sympy as sp

from ..program.ir import (
    Assign,
    Input,
    Program,
    ProgramError,
    free_indices,
    lhs_index_set,
    name_of,
    remembered,
    with_body,
)
from ..program.ops import ArgMax, Maximum, Piecewise, maximum_weight, op_for, piecewise_partial
from .factoring import tidy
from .reduction import Context
from .terms import bound_renamed, delta, fresh
from .terms import renamed as index_renamed


def adjoint_name(name: str) -> str:
    return "d" + name


def adjoint_of(lhs: sp.Expr) -> sp.Expr:
    """``x[i, j] -> dx[i, j]``; a scalar ``loss -> dloss``."""
    if isinstance(lhs, sp.Indexed):
        return sp.IndexedBase(adjoint_name(name_of(lhs)))[lhs.indices]
    return sp.Symbol(adjoint_name(name_of(lhs)))


def adjoint_lhs(program: Program, name: str) -> sp.Expr:
    """The adjoint of ``name`` written over its plain axes: ``dembcat[i, k]``, ``dloss``."""
    if isinstance(program.lhs(name), sp.Indexed):
        return sp.IndexedBase(adjoint_name(name))[program.axes(name)]
    return sp.Symbol(adjoint_name(name))


def partial(expr: sp.Expr, name: str, at: tuple, output: sp.Expr | None = None) -> sp.Expr:
    """The derivative of ``expr`` with respect to ``name[at]``, with deltas for the index matches.
    ``output`` stands for ``expr`` itself in rules that reuse the op's result (``exp``, ``tanh``).

    >>> from sympy import IndexedBase, Idx, symbols, tanh
    >>> n = symbols("n", integer=True, positive=True)
    >>> i, k = Idx("i", n), Idx("k", n)
    >>> partial(tanh(IndexedBase("x")[i]), "x", (k,), IndexedBase("h")[i])
    (1 - h[i]**2)*KroneckerDelta(i, k)
    """
    if not _reads(expr, name) or isinstance(expr, (sp.Idx, sp.KroneckerDelta, ArgMax)):
        return sp.S.Zero
    if isinstance(expr, sp.Indexed):
        return sp.Mul(*[delta(a, b) for a, b in zip(at, expr.indices)])
    if isinstance(expr, sp.Symbol):
        return sp.S.One  # a scalar name
    if isinstance(expr, sp.Add):
        return sp.Add(*[partial(arg, name, at) for arg in expr.args])
    if isinstance(expr, sp.Mul):
        total = []
        for position, arg in enumerate(expr.args):
            d = partial(arg, name, at)
            if d != 0:
                others = expr.args[:position] + expr.args[position + 1:]
                total.append(sp.Mul(*others) * d)
        return sp.Add(*total)
    if isinstance(expr, sp.Sum):
        body, bound = bound_renamed(expr)
        d = partial(body, name, at)
        return sp.Sum(d, *bound) if d != 0 else sp.S.Zero
    if isinstance(expr, Maximum):
        (index,) = [limit[0] for limit in expr.limits]
        body, (moved,) = bound_renamed(expr)
        d = partial(body, name, at)
        return sp.Sum(maximum_weight(expr.function, index, moved) * d, moved) if d != 0 else sp.S.Zero
    if isinstance(expr, Piecewise):  # branch by branch, see the op table
        return piecewise_partial(expr, name, at, partial)
    op = op_for(expr)
    if op is None:
        raise ProgramError(f"cannot differentiate '{expr}': function '{expr.func}' has no rule")
    total, partials = [], None
    for position, arg in enumerate(expr.args):
        d = partial(arg, name, at)
        if d != 0:
            partials = partials or op.partials(expr if output is None else output, *expr.args)
            total.append(partials[position] * d)
    return sp.Add(*total)


def _reads(expr: sp.Expr, name: str) -> bool:
    """Whether ``expr`` reads the array or scalar called ``name`` (as a value or an index)."""
    return name in _names_in(expr)


@remembered(maxsize=1 << 16)
def _names_in(expr: sp.Basic) -> frozenset[str]:
    """The names of the arrays (``Indexed``) and symbols anywhere in ``expr``: what its
    ``atoms(Indexed)`` and ``atoms(Symbol)`` name, gathered from the args' sets (remembered), so
    that ``partial``, asking it of every subtree, walks each node once rather than per ancestor."""
    own = {name_of(expr)} if isinstance(expr, sp.Indexed) else \
        {expr.name} if isinstance(expr, sp.Symbol) else set()
    return frozenset(own.union(*(_names_in(arg) for arg in expr.args)))


def reads(program: Program, expr: sp.Expr) -> list[str]:
    """The differentiable names ``expr`` reads, in the order the program declared them."""
    known = program.name_set
    found = {name_of(x) for x in expr.atoms(sp.Indexed)} | {
        s.name for s in expr.atoms(sp.Symbol) if s.name in known}
    found = {x for x in found if x in known and not program.integer(x)}
    return sorted(found, key=program.declared_position.__getitem__)


def contribution(program: Program, statement: Assign, name: str, context: Context,
                 upstream: sp.Expr) -> sp.Expr:
    """``Sum_lhs-indices upstream * d(rhs)/d(name[axes])``, tidied; zero when it vanishes."""
    renamed = {k: fresh(k) for k in lhs_index_set(statement.lhs)}
    rhs = index_renamed(statement.rhs, renamed)
    d = partial(rhs, name, program.axes(name), statement.lhs.xreplace(renamed))
    if d == 0:
        return sp.S.Zero
    body = index_renamed(upstream, renamed) * d
    return tidy(sp.Sum(body, *renamed.values()) if renamed else body, context)


def upstream_adjoint(program: Program, statement: Assign) -> sp.Expr:
    if program.loss and statement.name == program.outputs[0]:
        return sp.S.One  # the adjoint of a scalar loss is 1
    return adjoint_of(statement.lhs)


class ReversePass:
    """The walk both backwards share: the statements an adjoint reaches, last first, each with the
    differentiable names it reads; ``visited`` reports the names whose adjoints just became
    complete (every consumer seen), in the order that makes the notebook's ``cmp`` order."""

    def __init__(self, program: Program):
        self.program = program
        self.consumers = {name: 0 for name in program.names}
        for statement in program.body:
            for name in reads(program, statement.rhs):
                self.consumers[name] += 1
        self.reached = set() if program.loss else set(program.outputs)
        self.complete: list[str] = []

    def __iter__(self):
        """Every statement, last first, with the names it reads and whether an adjoint reaches
        it. A statement no adjoint reaches (dead code, or an adjoint that cancelled) contributes
        nothing, but the caller still reports it ``visited``: the names it reads must not wait
        for a contribution that never comes, or their adjoints complete too late."""
        loss = self.program.outputs[0] if self.program.loss else None
        for statement in reversed(self.program.body):
            active = statement.name in self.reached or statement.name == loss
            yield statement, reads(self.program, statement.rhs), active

    def visited(self, names: list[str]) -> list[str]:
        done = []
        for name in names:
            self.consumers[name] -= 1
            if self.consumers[name] == 0 and name in self.reached:
                done.append(name)
        self.complete += done
        return done

    def remaining(self) -> list[str]:
        """After the walk: names an adjoint reached whose other consumers no adjoint reached
        (dead code downstream of them); their adjoints are complete now."""
        left = [name for name in reversed(self.program.declared)
                if name in self.reached and name not in self.complete
                and name not in self.program.outputs]
        self.complete += left
        return left


def backward(program: Program) -> Program:
    """The atomic backward of ``program``: one statement per forward dependency.

    Its ``outputs`` are the adjoint names in the order they become complete, which for makemore is
    the notebook's ``cmp`` order; its inputs are the forward values and upstream adjoints it reads.
    """
    context = Context(program)
    walk, body = ReversePass(program), []
    for statement, used, active in walk:
        upstream = upstream_adjoint(program, statement)
        for name in used if active else ():
            rhs = contribution(program, statement, name, context, upstream)
            if rhs != 0:
                body.append(Assign(adjoint_lhs(program, name), rhs, accumulate=name in walk.reached))
                walk.reached.add(name)
        walk.visited(used)
    walk.remaining()
    return backward_program(program, body, walk.complete)


def backward_program(program: Program, body: list[Assign], complete: list[str]) -> Program:
    """Wrap adjoint statements as a Program reading forward values and upstream adjoints."""
    read_names = set()
    for statement in body:  # atoms() also finds the labels inside other reads' indices
        read_names |= {name_of(x) for x in statement.rhs.atoms(sp.Indexed)}
        read_names |= {x.name for x in statement.rhs.atoms(sp.Symbol)}
    defined = {s.name for s in body}
    inputs = [x for x in program.inputs if x.name in read_names]
    inputs += [Input(s.lhs) for s in program.body
               if s.name in read_names and not program.input(s.name)]
    if not program.loss:  # upstream adjoints, even when the body accumulates onto one
        inputs += [Input(adjoint_of(program.lhs(name))) for name in program.outputs]
    return with_body(program, body, inputs=tuple(inputs),
                     outputs=tuple(adjoint_name(x) for x in complete),
                     declared=tuple(x.name for x in inputs) + tuple(dict.fromkeys(defined)))


__all__ = ["adjoint_name", "adjoint_of", "backward", "free_indices", "partial"]
