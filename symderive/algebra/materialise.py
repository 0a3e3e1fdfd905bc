"""Which intermediate adjoints the compact backward materialises: the decisions a person writing
a backward by hand makes, as general rules over the chain rule's contributions. Inlining an adjoint
into its consumers lets cancellations across them happen (batchnorm's and cross-entropy's compact
forms), but an adjoint that feeds several contractions (``dW = x.T @ da``, ``dx = da @ W.T``)
gains nothing there: its elementwise work is paid once per consumer. ``by_cost`` keeps such an
adjoint named when the backward's work (``cost.work`` at the large-size profile) is lower that
way; ``wider_inlined`` when inlining would contract more arrays at once than reading it by name;
``INLINE_TERMS`` bounds how far an inlined adjoint may distribute.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from ..program.ir import Assign, Program, free_indices, name_of
from .cost import work
from .grad import reads, upstream_adjoint
from .reduction import Context
from .terms import components, expand

# The most terms an inlined adjoint may distribute into before it is materialised instead. A
# product of sums distributes into the product of their sizes: inlining the adjoint of a chain of
# elementwise maps (tanh after tanh) doubles the terms at every statement, and a person writing
# the backward by hand keeps ``dh`` there. The layers whose compact forms come from cancellations
# (batchnorm, cross-entropy, makemore) stay below 10.
INLINE_TERMS = 8


def contraction_width(expr: sp.Expr, context: Context) -> int:
    """The most arrays any one contraction of ``expr`` multiplies together, in the normal form
    (each term's factors that share bound indices are one contraction). Factors over the same
    axes, or over a subset of another factor's axes, are one operand: they multiply elementwise
    before the contraction. ``Sum_i x[i, d]*dh[i, h]`` is 2 (a matmul); ``Sum_{i, o} x[i, d]*
    dout[i, o]*U[h, o]*s[i, h]`` is 4, which no single matmul computes. An index only one operand
    has is summed out of it first (a reduction nested in the contraction), so ``Sum_{j, l}
    W[k, j]*r[i, j]*r[l, j]*g[l, j]`` is 2: ``r[l, j]*g[l, j]`` reduces to a vector over ``j``.

    >>> from sympy import IndexedBase, Idx, Sum, symbols
    >>> from symderive import Builder
    >>> n, d = symbols("n d", integer=True, positive=True)
    >>> i, j, k = Idx("i", n), Idx("j", d), Idx("k", d)
    >>> x, w, u, y = IndexedBase("x"), IndexedBase("w"), IndexedBase("u"), IndexedBase("y")
    >>> b = Builder("t", sizes={n: 2, d: 2}); b.input(x[i, j]); b[y[i, j]] = 2 * x[i, j]
    >>> b.output(y); context = Context(b.build())
    >>> contraction_width(Sum(x[i, j] * w[j, k] * x[i, k], j), context)
    2
    >>> contraction_width(Sum(x[i, j] * w[j, k] * u[k, i], j, k), context)
    3
    >>> contraction_width(Sum(x[i, j] * w[j, k] * u[i, j], i, j), context)  # (x*u).sum(0) @ w
    1
    """
    worst = 0
    for term in expand(expr, context.nonnegative):
        for bound, factors in components(term)[1]:
            operands = [set(free_indices(atom)) for atom, _ in factors]
            while True:  # merge subsets; sum an index only one operand has out of it first
                operands = [a for m, a in enumerate(operands) if not any(
                    a < b or a == b and m > q for q, b in enumerate(operands))]
                alone = [(a, k) for a in operands for k in a & set(bound)
                         if not any(k in b for b in operands if b is not a)]
                if not alone:
                    break
                for a, k in alone:
                    a.discard(k)
            worst = max(worst, len(operands))
    return worst


@dataclass(frozen=True)
class Choice:
    """Why an intermediate adjoint was materialised: ``rule`` (``"cost"``, ``"width"`` or
    ``"terms"``), the
    contributions that read it, and for the cost rule the backward's estimated work (operations
    at the large-size profile) of its statement's contributions with the adjoint inlined and with
    it named; and the contributions that stay inlined because they are cheaper so (a sum the
    inlined form reduces to 0)."""

    rule: str
    consumers: tuple[str, ...]
    inlined: float | None = None
    named: float | None = None
    kept_inlined: dict = field(default_factory=dict, compare=False)  # name: its contribution

    def __str__(self) -> str:
        if self.rule == "terms":
            return f"if inlined, it would distribute into more than {INLINE_TERMS} terms"
        if self.rule == "width":
            return (f"if inlined, the contributions to {', '.join(self.consumers)} would contract "
                    f"more than two arrays at once")
        return (f"feeds {len(self.consumers)} contractions ({', '.join(self.consumers)}): "
                f"{self.inlined:.3g} operations inlined, {self.named:.3g} named")


Contribute = Callable[[Assign, str, sp.Expr], sp.Expr]  # (statement, name, upstream) -> part


def wider_inlined(program: Program, statement: Assign, context: Context, upstream: sp.Expr,
                  simplified: Callable[[sp.Expr], sp.Expr], contribute: Contribute
                  ) -> tuple[Choice | None, dict[str, sp.Expr]]:
    """A ``Choice`` when the adjoint of ``statement``'s name should be materialised rather than
    inlined: inlined as ``upstream``, some contribution of the statement would contract more
    than two arrays at once and more than the same contribution reading the adjoint by name
    does. A hand writer's rule (``dh = dout @ U.T``, then ``dW = x.T @ (dh*...)``), not a
    layer's: layers that stay elementwise-plus-reductions (batchnorm, cross-entropy) never meet
    it.

    The raw chain can look wider than it is (cross-entropy's unsimplified adjoint has sums that
    cancel), so a contribution that looks too wide is judged again with the adjoint in its
    simplified form, the form the emitted code would compute; once one is, the rest are judged
    in that form alone (their raw contributions would be thrown away). Also returns the inlined
    contributions computed on the way, for reuse when the answer is no. ``contribute`` makes a
    contribution (``grad.contribution`` for this program, remembered by the caller)."""
    read = upstream_adjoint(program, statement)
    names = reads(program, statement.rhs)
    compact = None

    def wider(name: str) -> bool:
        width = contraction_width(contribute(statement, name, compact), context)
        return width > 2 and width > contraction_width(contribute(statement, name, read),
                                                       context)

    parts = {}
    for position, name in enumerate(names):
        part = parts[name] = contribute(statement, name, upstream)
        if part == 0 or contraction_width(part, context) <= 2:
            continue
        compact = simplified(upstream) if compact is None else compact
        if wider(name):
            found = (name,) + tuple(other for other in names[position + 1:] if wider(other))
            return Choice("width", found), parts
    return None, parts


def _may_contract(statement: Assign, name: str) -> bool:
    """Whether the contribution of ``statement`` to ``name``'s adjoint can sum a product (a
    necessary condition, cheap to test before any contribution is built): the statement binds an
    index (a Sum, a Maximum) or reads ``name`` without one of its own axes (an outer product)."""
    axes = set(free_indices(statement.lhs))
    if set(statement.rhs.atoms(sp.Idx)) - axes:
        return True
    return any(not axes <= set(free_indices(x)) for x in statement.rhs.atoms(sp.Indexed)
               if name_of(x) == name)


def by_cost(program: Program, statement: Assign, context: Context, upstream: sp.Expr,
            simplified: Callable[[sp.Expr], sp.Expr], sizes: dict,
            contribute: Contribute) -> Choice | None:
    """A ``Choice`` when the adjoint of ``statement``'s name, inlined as ``upstream``, should be
    materialised instead: it feeds at least two contractions (contributions of width 2 or more,
    where no cancellation across an input's contributions can save the repeated work) and the
    work of the statement's contributions is lower reading it by name, its simplified form
    computed once, than with that form repeated in each of them. Every other contribution is
    costed simplified both ways and takes the cheaper (batchnorm's ``dx`` sums to exactly 0 over
    the batch when inlined, so the bias before it keeps gradient 0). ``None`` otherwise."""
    names = reads(program, statement.rhs)
    if len([name for name in names if _may_contract(statement, name)]) < 2:
        return None  # fewer than two consumers can be contractions: nothing to share
    read = upstream_adjoint(program, statement)
    by_name = {name: contribute(statement, name, read) for name in names}
    consumers = tuple(name for name, part in by_name.items()
                      if part != 0 and contraction_width(part, context) >= 2)
    if len(consumers) < 2:
        return None
    compact = simplified(upstream)
    if not set(free_indices(compact)) <= set(free_indices(read)):
        return None  # not an array over the statement's axes: nothing to name
    inlined = sum(work(contribute(statement, name, compact), sizes) for name in consumers)
    named = work(compact, sizes) + sum(work(by_name[name], sizes) for name in consumers)
    kept_inlined = {}
    for name in names:
        if name in consumers:
            continue
        part = contribute(statement, name, compact)
        alone, through_name = work(simplified(part), sizes), work(by_name[name], sizes)
        inlined += alone
        named += min(alone, through_name)
        if alone < through_name:
            kept_inlined[name] = part
    return Choice("cost", consumers, inlined, named, kept_inlined) if named < inlined else None


__all__ = ["INLINE_TERMS", "Choice", "by_cost", "contraction_width", "wider_inlined"]
