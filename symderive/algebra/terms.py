"""The normal form the rewrite rules work on: an index expression as a list of ``Term``s, each a
scalar coefficient times a product of powered factors (array reads, deltas, opaque atoms), summed over
its own bound indices. Products of sums become one multi-index sum, so "pull a factor out of a Sum"
and "move it in" are no-ops here and ``to_expr`` chooses the readable placement. Bound indices are
renamed canonically so alpha-equivalent terms compare equal and collect.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from ..program.ir import free_indices, idx_size, remembered
from ..program.signs import nonnegative as structurally_nonnegative
from .cost import printed

_fresh_counter = itertools.count()


@dataclass(frozen=True)
class Term:
    """``coeff * prod(atom**exponent) summed over bound``."""

    coeff: sp.Expr
    bound: tuple[sp.Idx, ...] = ()
    factors: tuple[tuple[sp.Expr, sp.Expr], ...] = ()


ONE = Term(sp.Integer(1))


def fresh(index: sp.Idx) -> sp.Idx:
    """A new bound index over the same range, named so no user index can clash (``_17``)."""
    return sp.Idx(sp.Symbol(f"_{next(_fresh_counter)}", integer=True), idx_size(index))


@remembered(maxsize=1 << 16)  # asked of every node expand visits, again at every step
def is_scalar(expr: sp.Expr) -> bool:
    """True for coefficients: numbers, sizes and named constants, no arrays or indices."""
    return not expr.has(sp.Indexed, sp.Idx, sp.KroneckerDelta, ExprWithLimits)


def delta(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """``KroneckerDelta(a, b)``, built without SymPy's evaluation when both are distinct ``Idx``:
    every ``Idx`` has the same assumptions (integer, real, finite, whatever its label or range),
    so ``(a - b).is_zero`` is undecided and SymPy's ``eval`` only puts the two in its canonical
    order, which is done here the same way. Asking ``is_zero`` of a fresh index pair is most of
    what differentiation costs on a long chain; anything else goes to SymPy unchanged."""
    if type(a) is sp.Idx and type(b) is sp.Idx and a != b:
        if sp.default_sort_key(b) < sp.default_sort_key(a):
            a, b = b, a
        return sp.KroneckerDelta(a, b, evaluate=False)
    return sp.KroneckerDelta(a, b)


def renamed(expr: sp.Expr, mapping: dict) -> sp.Expr:
    """``expr.xreplace(mapping)`` for a ``mapping`` of indices, the same expression, with each delta
    between two indices that the renaming touches built by ``delta``: renaming bound indices
    rebuilds every delta that reads them, and SymPy's evaluation of each is the costly part."""
    if not mapping:
        return expr  # (what xreplace returns for an empty mapping)
    if not expr.has(sp.KroneckerDelta):
        return expr.xreplace(mapping)
    deltas = {}
    for atom in expr.atoms(sp.KroneckerDelta):
        if len(atom.args) == 2 and all(type(x) is sp.Idx for x in atom.args) and \
                any(x in mapping for x in atom.args):
            new = [mapping.get(x, x) for x in atom.args]
            if all(type(x) is sp.Idx for x in new):
                deltas[atom] = delta(*new)
    return expr.xreplace({**mapping, **deltas})


def bound_renamed(expr: ExprWithLimits) -> tuple[sp.Expr, tuple[sp.Idx, ...]]:
    """The body of a Sum-like expression with its bound indices replaced by fresh ones."""
    mapping = {limit[0]: fresh(limit[0]) for limit in expr.limits}
    return renamed(expr.function, mapping), tuple(mapping.values())


def rename_bound(expr: sp.Expr, rename) -> sp.Expr:
    """``expr`` with every index bound inside it (by Sum, Maximum, ArgMax) replaced by
    ``rename(old_index)``, outermost binder first."""
    def visit(node):
        if isinstance(node, ExprWithLimits):
            mapping = {limit[0]: rename(limit[0]) for limit in node.limits}
            return node.func(visit(renamed(node.function, mapping)), *mapping.values())
        if not node.args or isinstance(node, (sp.Idx, sp.Indexed)) and not node.has(ExprWithLimits):
            return node
        return node.func(*[visit(a) for a in node.args])

    return visit(expr) if _binds(expr) else expr


def freshen(expr: sp.Expr) -> sp.Expr:
    """Fresh names for every bound index, so that copies of ``expr`` never capture each other."""
    return rename_bound(expr, fresh)


def canonical_atom(atom: sp.Expr) -> sp.Expr:
    """Rename the indices an atom binds internally (``ArgMax(x[i, c], c)``) to ``_a0, _a1, ...`` so
    equal atoms compare equal whatever their dummies were called."""
    counter = itertools.count()
    return rename_bound(atom, lambda k: sp.Idx(sp.Symbol(f"_a{next(counter)}", integer=True),
                                               idx_size(k)))


def multiply(a: Term, b: Term) -> Term:
    clash = set(a.bound) & set(b.bound)
    if clash:
        mapping = {k: fresh(k) for k in clash}
        b = Term(b.coeff, tuple(mapping.get(k, k) for k in b.bound),
                 tuple((renamed(atom, mapping), e) for atom, e in b.factors))
    coeff = b.coeff if a.coeff is sp.S.One else a.coeff * b.coeff  # (1*x is x)
    return Term(coeff, a.bound + b.bound, a.factors + b.factors)


def expand(expr: sp.Expr, nonnegative: Callable[[sp.Expr], bool] = structurally_nonnegative
           ) -> list[Term]:
    """Distribute ``expr`` into terms (the ``distribute`` rule's engine). A power of a power
    becomes one power, ``(a**b)**c -> a**(b*c)``, only under that identity's side condition: ``c``
    an integer, or ``nonnegative(a)`` (what the program establishes; see ``signs``). Otherwise the
    inner power stays one opaque factor: ``(x**2)**(1/2)`` is ``|x|``, not ``x``.

    >>> from sympy import IndexedBase, Idx, Sum, symbols
    >>> n = symbols("n", integer=True, positive=True)
    >>> i, k = Idx("i", n), Idx("k", n)
    >>> x, y = IndexedBase("x"), IndexedBase("y")
    >>> len(expand(x[i] * (y[i] + Sum(y[k], k))))
    2
    """
    if is_scalar(expr):
        return [Term(expr)] if expr != 0 else []
    if isinstance(expr, sp.Add):
        return [t for arg in expr.args for t in expand(arg, nonnegative)]
    if isinstance(expr, sp.Mul):
        result = [ONE]
        for arg in expr.args:
            parts = expand(arg, nonnegative)
            result = [multiply(a, b) for a in result for b in parts]
        return result
    if isinstance(expr, sp.Sum):
        body, bound = bound_renamed(expr)
        return [Term(t.coeff, bound + t.bound, t.factors) for t in expand(body, nonnegative)]
    if isinstance(expr, sp.Pow) and is_scalar(expr.exp):
        base, exponent = expr.args
        parts = expand(base, nonnegative)
        if exponent.is_Integer and exponent > 0 and len(parts) > 1 and _elementwise(base):
            # a power of a difference stays one: (x - t)**2 expanded is x**2 - 2*x*t + t**2,
            # whose terms cancel in floating point where x and t are close and large
            return [Term(sp.Integer(1), (), ((canonical_atom(base), exponent),))]
        if exponent.is_Integer and exponent > 0 and (len(parts) > 1 or isinstance(base, sp.Sum)):
            result = [ONE]
            for _ in range(int(exponent)):
                result = [multiply(a, b) for a in result for b in parts]
            return result
        if exponent.is_Integer and len(parts) == 1 and not parts[0].bound:
            (term,) = parts
            return [Term(term.coeff**exponent, (), tuple((a, e * exponent) for a, e in term.factors))]
        if len(parts) == 1 and not parts[0].bound and len(parts[0].factors) == 1 \
                and parts[0].coeff == 1:
            atom, e = parts[0].factors[0]
            if e == 1 or exponent.is_integer or nonnegative(atom):  # the side condition
                return [Term(sp.Integer(1), (), ((atom, e * exponent),))]
        return [Term(sp.Integer(1), (), ((canonical_atom(base), exponent),))]
    return [Term(sp.Integer(1), (), ((canonical_atom(expr), sp.Integer(1)),))]


def _elementwise(expr: sp.Expr) -> bool:
    """Whether ``expr`` is computed element by element: no sum, maximum or delta in it (a power
    of such a sum is kept whole by ``expand``; one of a reduction or a delta is distributed, so
    that the reduction rules and delta contraction see its terms)."""
    return not expr.has(ExprWithLimits, sp.KroneckerDelta)


def expanded_size(expr: sp.Expr) -> int:
    """How many terms ``expand(expr)`` makes, counted without making them (a product of sums
    distributes into the product of their sizes, which is what can grow exponentially).

    >>> from sympy import IndexedBase, Idx, symbols
    >>> n = symbols("n", integer=True, positive=True)
    >>> i = Idx("i", n)
    >>> y, z = IndexedBase("y"), IndexedBase("z")
    >>> expanded_size((1 - y[i]**2) * (1 - z[i]**2) * y[i])
    4
    """
    if is_scalar(expr):
        return 1
    if isinstance(expr, sp.Add):
        return sum(expanded_size(arg) for arg in expr.args)
    if isinstance(expr, sp.Mul):
        return math.prod(expanded_size(arg) for arg in expr.args)
    if isinstance(expr, sp.Sum):
        return expanded_size(expr.function)
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and expr.exp > 0:
        inner = expanded_size(expr.base)
        return 1 if inner > 1 and _elementwise(expr.base) else inner ** int(expr.exp)
    return 1


def combine(term: Term) -> Term:
    """Merge repeated atoms by adding exponents and drop the ones that cancel to ``x**0``."""
    merged: dict[sp.Expr, sp.Expr] = {}
    for atom, e in term.factors:
        merged[atom] = merged[atom] + e if atom in merged else e  # (0 + e is e)
    factors = []
    for atom, e in merged.items():
        if e == 0:
            continue
        if isinstance(atom, sp.KroneckerDelta) and e.is_positive:
            e = sp.Integer(1)  # a delta is 0 or 1, so its powers are itself
        factors.append((atom, e))
    return Term(term.coeff, term.bound, tuple(factors))


def _placeholder(position: int, like: sp.Idx) -> sp.Idx:
    return sp.Idx(sp.Symbol(f"_b{position}", integer=True), idx_size(like))


@remembered(maxsize=1 << 15)  # collect canonicalises the same terms at every fixpoint round
def canonical(term: Term) -> Term:
    """Rename bound indices to ``_b0, _b1, ...`` in the order that sorts the factors smallest, and
    sort the factors, so two alpha-equivalent terms become identical."""
    def rendered(order, keyed=True):
        mapping = {k: _placeholder(m, k) for m, k in enumerate(order)}
        factors = tuple(sorted(((renamed(a, mapping), e) for a, e in term.factors),
                               key=lambda f: (printed(f[0]), printed(f[1]))))
        key = (tuple(printed(idx_size(k)) for k in order),
               tuple((printed(a), printed(e)) for a, e in factors)) if keyed else None
        return key, Term(term.coeff, tuple(mapping.values()), factors)

    if len(term.bound) <= 1 or len(term.bound) > 5:
        return rendered(term.bound, keyed=False)[1]  # one order: no keys to compare
    return min((rendered(order) for order in itertools.permutations(term.bound)),
               key=lambda pair: pair[0])[1]


def collect(terms: list[Term]) -> list[Term]:
    """Canonicalise and add the coefficients of identical terms; drop the ones that sum to zero."""
    grouped: dict[tuple, sp.Expr] = {}
    for term in terms:
        term = canonical(term)
        key = (term.bound, term.factors)
        grouped[key] = grouped[key] + term.coeff if key in grouped else term.coeff
    result = []
    for (bound, factors), coeff in grouped.items():
        coeff = _collected_coefficient(coeff)
        if coeff != 0:
            result.append(Term(coeff, bound, factors))
    return result


@remembered(maxsize=1 << 14)  # a derivation's terms share a few coefficients (1, -1, 1/n, ...)
def _collected_coefficient(coeff: sp.Expr) -> sp.Expr:
    return sp.factor_terms(sp.together(coeff))


def components(term: Term) -> tuple[list, list[tuple[tuple[sp.Idx, ...], list]]]:
    """Split a term's factors into those free of bound indices and groups that share bound
    indices: ``sum_{k,m} a[i] b[k] c[m] -> ([a[i]], [((k,), [b[k]]), ((m,), [c[m]])])``."""
    outside, groups = [], []  # groups: [bound set, factor list]
    for atom, e in term.factors:
        uses = {k for k in term.bound if k in free_indices(atom)}
        if not uses:
            outside.append((atom, e))
            continue
        touching = [g for g in groups if g[0] & uses]
        merged = [uses, [(atom, e)]]
        for g in touching:
            groups.remove(g)
            merged[0] |= g[0]
            merged[1] = g[1] + merged[1]
        groups.append(merged)
    def appearance(group):  # bound indices in the order the printed factors use them
        seen = [k for atom, _ in sorted(group[1], key=lambda f: str(f[0])) for k in free_indices(atom)]
        return tuple(sorted(group[0], key=seen.index))

    return outside, [(appearance(g), g[1]) for g in groups]


def power(atom: sp.Expr, e: sp.Expr) -> sp.Expr:
    return atom if e == 1 else sp.Pow(atom, e)


@remembered(maxsize=1 << 15)  # most terms of a derivation's next form are those of the last
def term_expr(term: Term) -> sp.Expr:
    outside, groups = components(term)
    used = {k for bound, _ in groups for k in bound}
    scale = sp.Mul(*[idx_size(k) for k in term.bound if k not in used])
    sums = [sp.Sum(sp.Mul(*[power(a, e) for a, e in factors]), *bound) for bound, factors in groups]
    product = sp.sympify(term.coeff)
    # left to right as ``coeff*scale*outside*sums``; a product by 1 returns the other factor
    # itself, so those are skipped
    for part in (scale, sp.Mul(*[power(a, e) for a, e in outside]), sp.Mul(*sums)):
        if part is not sp.S.One:
            product = product * part
    return product


def to_expr(terms: list[Term]) -> sp.Expr:
    """Back to SymPy, each bound-index group as its own Sum and everything else pulled out."""
    return sp.Add(*[term_expr(t) for t in terms])


def readable(expr: sp.Expr, names_for, taken: set[str] = frozenset()) -> sp.Expr:
    """Give every bound index a readable name: ``names_for(size)`` lists candidates for a range;
    a binder avoids the names free in the whole expression and bound around it, while sibling sums
    may reuse one (``Sum(g[k, j], k) - Sum(g[k, j]*x[k, j], k)``)."""
    if not _binds(expr):  # nothing to name: what visit returns, without the names it avoids
        return _rebuilt(expr)
    taken = set(taken) | {str(k) for k in free_indices(expr)}

    def visit(node, taken):
        if isinstance(node, ExprWithLimits):
            inner_free = {str(k) for k in free_indices(node.function)}
            mapping, used = {}, set(taken)
            for limit in node.limits:
                k = limit[0]
                if not str(k).startswith("_"):
                    used.add(str(k))
                    continue
                name = next(x for x in names_for(idx_size(k)) if x not in used | inner_free)
                used.add(name)
                mapping[k] = sp.Idx(name, idx_size(k))
            body = visit(renamed(node.function, mapping), used)
            return node.func(body, *[mapping.get(limit[0], limit[0]) for limit in node.limits])
        if not _binds(node):  # nothing to name below: the rebuild depends on the node alone
            return _rebuilt(node)
        return node.func(*[visit(a, taken) for a in node.args])

    return visit(expr, taken)


@remembered(maxsize=1 << 16)
def _binds(node: sp.Basic) -> bool:
    """Whether ``node`` holds a Sum or another binder (whose indices ``readable`` names)."""
    return isinstance(node, ExprWithLimits) or any(_binds(a) for a in node.args)


@remembered(maxsize=1 << 16)
def _rebuilt(node: sp.Basic) -> sp.Basic:
    """``node`` rebuilt from its rebuilt args, as ``readable`` rebuilds every node (which
    evaluates any unevaluated part); remembered, since the forms of one derivation share most of
    their subtrees. An array read at plain indices rebuilds to itself."""
    if not node.args or isinstance(node, sp.Idx) or isinstance(node, sp.Indexed) and all(
            not x.args or isinstance(x, (sp.Idx, sp.IndexedBase)) for x in node.args):
        return node
    return node.func(*[_rebuilt(a) for a in node.args])
