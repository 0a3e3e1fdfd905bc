"""The output form of a sum of terms: ``factor`` pulls out what every term shares (``gamma*rstd/n``)
and ``gather`` factors by what subsets of terms share, recursively, keeping the fewest
operations (a Horner-like form), after merging contractions that share an operand. Both read
distributivity backwards and need no side condition. ``tidy`` is what the reverse pass applies
to each adjoint contribution.
"""
from __future__ import annotations

import itertools
import math

import sympy as sp

from ..program.ir import free_indices, idx_size, remembered
from .cost import operation_count, printed
from .reduction import TIDY_RULES, Context
from .terms import Term, components, expand, power, readable, to_expr

FACTOR_CONDITION = ("none: a factor every term has is pulled out (x**a*u + x**b*v = "
                    "x**min(a, b)*(...) wherever the left side is defined)")


def _split_coefficient(coeff: sp.Expr) -> tuple[sp.Rational, dict]:
    number, powers = _coefficient_parts(coeff)
    return number, dict(powers)  # a fresh dict: callers add the term's own factors to it


@remembered(maxsize=1 << 14)
def _coefficient_parts(coeff: sp.Expr) -> tuple[sp.Expr, tuple]:
    # remembered: factor and gather split the same few coefficients of every term
    number, rest = sp.factor(coeff).as_coeff_Mul()
    powers: dict = {}
    for factor in sp.Mul.make_args(rest):
        base, e = factor.as_base_exp()
        powers[base] = powers.get(base, 0) + e
    return number, tuple(powers.items())


def _positive(number: sp.Expr) -> bool:
    """``bool(number > 0)``; for a plain number, without building the relation."""
    return bool(number.is_positive) if number.is_Number else bool(number > 0)


def _common(dicts: list[dict]) -> dict:
    """Factors every dict has with exponents of one sign, at the smallest magnitude."""
    common = {}
    for atom, e in dicts[0].items():
        exps = [d.get(atom) for d in dicts]
        if all(x is not None and x.is_number and _positive(x) == _positive(e) for x in exps):
            common[atom] = min(exps) if _positive(e) else max(exps)
    return common


def _common_number(numbers: list[sp.Expr]) -> sp.Expr:
    """The largest rational dividing all ``numbers`` (negative when all are); 1 (or -1) as soon
    as one is a float: a float literal stays the float the user wrote, never the exact binary
    fraction behind it (``0.044715`` is not ``3222...23/72057594037927936``)."""
    sign = -1 if numbers and all(x < 0 for x in numbers) else 1
    if not all(isinstance(x, sp.Rational) for x in numbers):
        size = abs(numbers[0])  # floats: only a number they all share, up to sign
        shared = all(abs(x) == size for x in numbers) and size != 1
        return sign * size if shared else sp.Integer(sign)
    # math's gcd and lcm of Python ints: SymPy's list forms go through its polynomial machinery
    return sign * sp.Rational(math.gcd(*[x.p for x in numbers]), math.lcm(*[x.q for x in numbers]))


def factor(terms: list[Term], context: Context) -> sp.Expr:
    """Pull the factors all terms share out front: ``dh - h**2*dh -> (1 - h**2)*dh`` and
    ``p/n - KroneckerDelta(c, Y[i])/n -> (p - KroneckerDelta(c, Y[i]))/n``. Returns SymPy."""
    if len(terms) < 2:
        return to_expr(terms)
    outside = [dict(components(t)[0]) for t in terms]
    common_factors = _common(outside)
    split = [_split_coefficient(t.coeff) for t in terms]
    common_coeff = _common([powers for _, powers in split])
    number = _common_number([number for number, _ in split])
    scale = number * sp.Mul(*[b**e for b, e in common_coeff.items()])
    if scale == 1 and not common_factors:
        return to_expr(terms)
    rest = []
    for term in terms:
        factors = tuple((atom, e - common_factors.get(atom, 0)) for atom, e in term.factors)
        rest.append(Term(sp.factor_terms(term.coeff / scale), term.bound,
                         tuple((atom, e) for atom, e in factors if e != 0)))
    pulled = sp.Mul(*[power(a, e) for a, e in common_factors.items()])
    return scale * pulled * to_expr(rest)


Monomial = tuple  # (number, ((atom, exponent), ...) sorted): one term, its sums opaque atoms


def _monomials(terms: list[Term], sums: dict) -> list[Monomial]:
    """Each term as a number times powers of atoms: its factors outside sums, each of its sums
    (one opaque atom, its bound indices and factors kept in ``sums``), the symbols and sizes of
    its coefficient."""
    result, interned = [], {}
    for term in terms:
        outside, groups = components(term)
        used = {k for bound, _ in groups for k in bound}
        scale = sp.Mul(*[idx_size(k) for k in term.bound if k not in used])
        number, powers = _split_coefficient(term.coeff * scale)
        for atom, e in outside:
            powers[atom] = powers.get(atom, 0) + e
        for bound, factors in groups:
            atom = sp.Sum(sp.Mul(*[power(a, e) for a, e in factors]), *bound)
            sums[atom] = (bound, tuple(factors))
            powers[atom] = powers.get(atom, 0) + 1
        # one object per distinct atom: the search compares and looks atoms up constantly, and
        # the same object compares by identity, an equal copy by walking both trees
        powers = {interned.setdefault(atom, atom): e for atom, e in powers.items()}
        result.append((number, _sorted(powers)))
    return result


def _sorted(powers: dict) -> tuple:
    return tuple(sorted(((a, e if isinstance(e, sp.Basic) else sp.sympify(e))
                         for a, e in powers.items() if e != 0),
                        key=lambda f: (printed(f[0]), printed(f[1]))))


def _deltas(factors) -> set:
    return {f for f in factors if f[0].has(sp.KroneckerDelta)}


MERGE_CONDITION = ("no free index of c is named like an index the sum binds (c is constant in "
                   "them and none is captured), c holds no delta, and c is over no index f "
                   "lacks (the sum stays as wide as it was); applied only where it merges two "
                   "different sums into one")


def _movable(factors, bound, summand) -> bool:
    """Whether ``factors`` (atom, exponent) can move into a sum over ``bound`` of the product of
    ``summand`` (its factors): constant in its indices (compared by name, so a free index can
    never be captured by a bound one of the same name), over no index the summand lacks (moved
    in, ``xhat[i, j]`` would make ``Sum_k xhat[k, j]*dy[k, j]`` an (i, k, j) contraction), and
    no deltas (a delta outside a sum is a selection the delta rules read there)."""
    names = {k.label for k in bound}
    present = {k.label for atom, _ in summand for k in free_indices(atom)}
    for atom, _ in factors:
        labels = {k.label for k in free_indices(atom)}
        if atom.has(sp.KroneckerDelta) or labels & names or not labels <= present:
            return False
    return True


def _narrower(inner, summand) -> bool:
    """Whether the factors ``inner`` span fewer indices than ``summand``'s: the merged sum then
    computes them on a smaller array before the one contraction (attention's ``dP - c`` over
    (t, s), contracted with ``K`` over (s, e)); over the whole summand, two column sums made one
    would only trade a reduction for an elementwise pass."""
    labels = {k.label for atom, _ in inner for k in free_indices(atom)}
    return labels < {k.label for atom, _ in summand for k in free_indices(atom)}


def _merge_contractions(monomials: list[Monomial], sums: dict) -> list[Monomial]:
    """Merge two sums over the same indices that share an operand and differ in the rest, when
    that costs fewer ops: ``Sum(M[i, k]*v[k], k) + Sum(N[i, k]*v[k], k) -> Sum((M[i, k] +
    N[i, k])*v[k], k)`` (one contraction instead of two). Factors outside one sum and not the
    other that are constant in its indices move in first (``MERGE_CONDITION``): attention's
    ``Sum(K*P*dP, s) - Sum(K*P, s)*c`` with ``c`` a row sum is ``Sum(K*P*(dP - c), s)``."""
    merged = True
    while merged:
        merged = False
        for a, b in itertools.combinations(monomials, 2):
            candidate = _merged(a, b, sums)
            if candidate is not None:
                monomials = [m for m in monomials if m is not a and m is not b] + [candidate]
                merged = True
                break
    return monomials


def _merged(a: Monomial, b: Monomial, sums: dict) -> Monomial | None:
    """``a + b`` as one monomial with one sum, where a sum of each over the same indices shares
    an operand, everything else either side has moves in (``_movable``) or is common to both,
    and the result has fewer ops; else None. Registers the new sum in ``sums``."""
    pa, pb = dict(a[1]), dict(b[1])
    for sa in [x for x, e in pa.items() if x in sums and e == 1]:
        for sb in [x for x, e in pb.items() if x in sums and e == 1]:
            if sums[sa][0] != sums[sb][0] or _deltas(sums[sa][1]) != _deltas(sums[sb][1]):
                continue  # a delta is a scatter or a slice: merge only sums with the same one
            others_a = {x: e for x, e in pa.items() if x != sa}
            others_b = {x: e for x, e in pb.items() if x != sb}
            others = {x: e for x, e in others_a.items() if others_b.get(x) == e}
            extra_a = [(x, e) for x, e in others_a.items() if x not in others]
            extra_b = [(x, e) for x, e in others_b.items() if x not in others]
            bound, fa = sums[sa]
            fb = sums[sb][1]
            shared = [f for f in fa if f in fb]
            if not shared or not _movable(extra_a, bound, fa) or not _movable(extra_b, bound, fb):
                continue
            if (extra_a or extra_b) and (sa == sb or not _narrower(
                    [f for f in fa + fb if f not in shared] + extra_a + extra_b, fa + fb)):
                continue  # moving factors in pays only where it saves a whole contraction
            rest_a = [power(x, e) for x, e in fa if x not in dict(shared)] + \
                [power(x, e) for x, e in extra_a]
            rest_b = [power(x, e) for x, e in fb if x not in dict(shared)] + \
                [power(x, e) for x, e in extra_b]
            inner = a[0] * sp.Mul(*rest_a) + b[0] * sp.Mul(*rest_b)
            atom = sp.Sum(sp.Mul(*[power(x, e) for x, e in shared]) * inner, *bound)
            candidate = (sp.Integer(1), _sorted({**others, atom: 1}))
            if operation_count(_product(*candidate)) >= \
                    operation_count(_product(*a) + _product(*b)):
                continue
            sums[atom] = (bound, tuple(shared) + ((inner, sp.Integer(1)),))
            return candidate
    return None


def _product(number: sp.Expr, powers) -> sp.Expr:
    product = sp.Mul(*[power(a, e) for a, e in powers])
    return product if number is sp.S.One else number * product  # (1*x is x)


def _divide(monomial: Monomial, number: sp.Expr, powers: dict) -> Monomial:
    return _divided(monomial, number, tuple(powers.items()))


@remembered(maxsize=1 << 15)  # the search divides the same monomial by the same atom often
def _divided(monomial: Monomial, number: sp.Expr, powers: tuple) -> Monomial:
    left = dict(monomial[1])
    for atom, e in powers:
        left[atom] = left[atom] - e
    unit = number is sp.S.One or type(number) is int and number == 1  # (x/1 is x)
    return (monomial[0] if unit else monomial[0] / number, _sorted(left))


def _proportion(q: list[Monomial], r: list[Monomial]) -> sp.Expr | None:
    """The number ``lam`` with ``q == lam*r`` term by term, if there is one."""
    if len(q) != len(r):
        return None
    q, r = sorted(q, key=lambda m: printed(m[1])), sorted(r, key=lambda m: printed(m[1]))
    if any(a[1] != b[1] for a, b in zip(q, r)):
        return None
    ratios = {a[0] / b[0] for a, b in zip(q, r)}
    if len(ratios) != 1:
        return None
    ratio = ratios.pop()
    return sp.Integer(int(ratio)) if ratio.is_Float and ratio == int(ratio) else ratio


@remembered(maxsize=1 << 16)
def _gather(monomials: tuple[Monomial, ...]) -> sp.Expr:
    # remembered across calls, not only within one: a function of the monomials alone, and the
    # forms of one derivation (and the same adjoint simplified twice) share most sub-sums
    if len(monomials) == 1:  # remembered too: each term's product recurs in many candidates
        return _product(*monomials[0])
    powers = [dict(m[1]) for m in monomials]
    common = _common(powers)
    number = _common_number([m[0] for m in monomials])
    if number != 1 or common:
        inner = tuple(_divide(m, number, common) for m in monomials)
        if inner != monomials:  # (a float 1.0 divides nothing out)
            return _product(number, common.items()) * _gather(inner)
    candidates = [sp.Add(*[_gather((m,)) for m in monomials])]
    counts: dict = {}
    for p in powers:
        for atom, e in p.items():
            if e.is_number:
                key = (atom, _positive(e))
                counts[key] = counts.get(key, 0) + 1
    shared = sorted((key for key, count in counts.items() if count > 1),
                    key=lambda key: (-counts[key], printed(key)))
    for atom, positive in shared[:4]:  # the most shared atoms; enough for an elementwise chain
        having, exps = [], []
        for m, p in zip(monomials, powers):
            if atom in p and p[atom].is_number and _positive(p[atom]) == positive:
                having.append(m)
                exps.append(p[atom])
        chosen = {id(m) for m in having}  # (equal monomials are all chosen or none)
        rest = tuple(m for m in monomials if id(m) not in chosen)
        pulled = {atom: min(exps) if positive else max(exps)}
        inside = [_divide(m, 1, pulled) for m in having]
        ratio = _proportion(inside, list(rest)) if rest else None
        if ratio is not None:  # a*Q + Q -> (1 + a)*Q: the (1 - y**2) of tanh' and the like
            candidates.append((1 + ratio * power(atom, pulled[atom])) * _gather(rest))
        else:
            candidates.append(power(atom, pulled[atom]) * _gather(tuple(inside))
                              + (_gather(rest) if rest else 0))
    return min(candidates, key=operation_count)


def gather(terms: list[Term], context: Context) -> sp.Expr:
    """Factor a sum of products by what its terms share, recursively, keeping the fewest ops
    (a Horner-like form), after merging contractions that share an operand (see
    ``_merge_contractions``): ``a*x**3 - a*x**3*t**2 + b*x - b*x*t**2 + t + 1 -> x*(a*x**2 + b)*(1 -
    t**2) + t + 1``. A sum over bound indices is one opaque factor. Returns SymPy."""
    if len(terms) < 2:
        return to_expr(terms)
    sums: dict = {}
    return _gather(tuple(_merge_contractions(_monomials(terms, sums), sums)))


GATHER_CONDITION = ("distributivity read backwards, a*u + a*v = a*(u + v), and q*a + q = "
                    "(1 + a)*q, wherever the left side is defined; two sums over the same "
                    "indices add under one sum, Sum(a*u) + Sum(a*v) = Sum(a*(u + v)), after a "
                    "factor outside one of them moves in, c*Sum_k f[k] = Sum_k c*f[k], only "
                    "where " + MERGE_CONDITION)


def tidy(expr: sp.Expr, context: Context) -> sp.Expr:
    """Expand, contract deltas, collect and factor, then name bound indices readably.

    ``Sum(dy[i2]*KroneckerDelta(i, i2), i2) -> dy[i]``.
    """
    terms = expand(expr, context.nonnegative)
    for rule in TIDY_RULES:
        terms = rule.apply(terms, context)
    return readable(factor(terms, context), context.names_for)
