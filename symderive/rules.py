"""Named rewrite rules on the ``Term`` normal form. Each rule is a function ``(terms, context) ->
terms`` with a one-line docstring example; the simplifier records every application that changes the
expression as a ``Step``, and those steps are the derivation a reader (or LaTeX) follows.
None of them knows about a particular layer: the facts they use are read off the forward program.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .ir import Program, free_indices, idx_size
from .terms import Term, collect, combine, components, expand, power, readable, to_expr

FALLBACK_NAMES = ["k", "l", "m", "p", "q", "r", "s", "u", "w", "a", "b", "f", "g", "o"]


class Context:
    """What the rules may know about a program: its index names (for readable output) and, for
    the simplifier, its definitions as fold/unfold patterns and the reduction facts they imply."""

    def __init__(self, program: Program):
        self.program = program
        self.reserved = set(program.names) | {str(s) for s, _ in program.sizes} \
            | {str(s) for s, _ in program.constants}
        # Statements first: their indices are the ones a reader has just seen.
        self._names: dict[sp.Expr, list[str]] = {}
        found = [k for s in program.body for k in free_indices(s.lhs) + sorted(
            s.rhs.atoms(sp.Idx), key=str)]
        found += [k for x in program.inputs for k in x.indices]
        for k in found:
            names = self._names.setdefault(idx_size(k), [])
            if str(k) not in names:
                names.append(str(k))

    def names_for(self, size: sp.Expr):
        """Candidate names for a bound index over ``size``: the program's own, then letters."""
        yield from self._names.get(size, [])
        for name in FALLBACK_NAMES:
            if name not in self.reserved:
                yield name
        for suffix in range(2, 100):
            for name in FALLBACK_NAMES:
                yield f"{name}{suffix}"


@dataclass(frozen=True)
class Rule:
    name: str
    apply: Callable[[list[Term], Context], list[Term]]

    @property
    def doc(self) -> str:
        return (self.apply.__doc__ or "").strip()


def cancel(terms: list[Term], context: Context) -> list[Term]:
    """Combine powers of the same factor: ``p[i, c] * p[i, c]**-1 -> 1``, ``s**-2 * s -> s**-1``."""
    result = []
    for term in terms:
        term = combine(term)
        scalars = [(a, e) for a, e in term.factors if not a.has(sp.Indexed, sp.Idx)]
        if scalars:
            coeff = term.coeff * sp.Mul(*[a**e for a, e in scalars])
            term = Term(coeff, term.bound, tuple(f for f in term.factors if f not in scalars))
        if term.coeff != 0:
            result.append(term)
    return result


def _contract_once(term: Term) -> Term | None:
    for position, (atom, _) in enumerate(term.factors):
        if not isinstance(atom, sp.KroneckerDelta):
            continue
        a, b = atom.args
        for old, new in ((a, b), (b, a)):
            if old in term.bound and isinstance(old, sp.Idx) and old not in free_indices(new):
                mapping = {old: new}
                factors = tuple((f.xreplace(mapping), e) for m, (f, e) in enumerate(term.factors)
                                if m != position)
                return Term(term.coeff, tuple(k for k in term.bound if k != old), factors)
    return None


def contract_delta(terms: list[Term], context: Context) -> list[Term]:
    """Sum over a delta's bound index: ``Sum(KroneckerDelta(k, l)*x[k], k) -> x[l]`` and, labels
    being declared in range, ``Sum(KroneckerDelta(c, Y[i])*p[i, c], c) -> p[i, Y[i]]``."""
    result = []
    for term in terms:
        while (contracted := _contract_once(term)) is not None:
            term = contracted
        result.append(term)
    return cancel(result, context)


def sum_of_constant(terms: list[Term], context: Context) -> list[Term]:
    """A sum whose summand does not use its index multiplies by the range: ``Sum(a[j], i) -> n*a[j]``."""
    result = []
    for term in terms:
        used = {k for atom, _ in term.factors for k in free_indices(atom)}
        idle = [k for k in term.bound if k not in used]
        coeff = term.coeff * sp.Mul(*[idx_size(k) for k in idle])
        result.append(Term(coeff, tuple(k for k in term.bound if k in used), term.factors))
    return result


def collect_terms(terms: list[Term], context: Context) -> list[Term]:
    """Add terms that are equal up to the names of their bound indices: ``x[i] - x[i] -> 0``."""
    return collect(terms)


CANCEL = Rule("cancel", cancel)
CONTRACT_DELTA = Rule("contract-delta", contract_delta)
SUM_OF_CONSTANT = Rule("sum-of-constant", sum_of_constant)
COLLECT = Rule("collect", collect_terms)

# What the reverse pass applies to each adjoint contribution: enough to remove the deltas that
# differentiation introduces, nothing that would change which forward values are read.
TIDY_RULES = (CANCEL, CONTRACT_DELTA, SUM_OF_CONSTANT, COLLECT)


def _split_coefficient(coeff: sp.Expr) -> tuple[sp.Rational, dict]:
    number, rest = sp.factor(coeff).as_coeff_Mul()
    powers: dict = {}
    for factor in sp.Mul.make_args(rest):
        base, e = factor.as_base_exp()
        powers[base] = powers.get(base, 0) + e
    return number, powers


def _common(dicts: list[dict]) -> dict:
    """Factors every dict has with exponents of one sign, at the smallest magnitude."""
    common = {}
    for atom, e in dicts[0].items():
        exps = [d.get(atom) for d in dicts]
        if all(x is not None and x.is_number and (x > 0) == (e > 0) for x in exps):
            common[atom] = min(exps) if e > 0 else max(exps)
    return common


def factor(terms: list[Term], context: Context) -> sp.Expr:
    """Pull the factors all terms share out front: ``dh - h**2*dh -> (1 - h**2)*dh`` and
    ``p/n - KroneckerDelta(c, Y[i])/n -> (p - KroneckerDelta(c, Y[i]))/n``. Returns SymPy."""
    if len(terms) < 2:
        return to_expr(terms)
    outside = [dict(components(t)[0]) for t in terms]
    common_factors = _common(outside)
    split = [_split_coefficient(t.coeff) for t in terms]
    common_coeff = _common([powers for _, powers in split])
    numbers = [number for number, _ in split]
    number = sp.Rational(sp.gcd([sp.Rational(x).p for x in numbers]),
                         sp.lcm([sp.Rational(x).q for x in numbers]))
    if all(x < 0 for x in numbers):
        number = -number
    scale = number * sp.Mul(*[b**e for b, e in common_coeff.items()])
    if scale == 1 and not common_factors:
        return to_expr(terms)
    rest = []
    for term in terms:
        factors, taken = [], dict(common_factors)
        for atom, e in term.factors:
            if atom in taken:
                e, taken[atom] = e - taken.pop(atom), 0
            if e != 0:
                factors.append((atom, e))
        rest.append(Term(sp.factor_terms(term.coeff / scale), term.bound, tuple(factors)))
    pulled = sp.Mul(*[power(a, e) for a, e in common_factors.items()])
    return scale * pulled * to_expr(rest)


def tidy(expr: sp.Expr, context: Context) -> sp.Expr:
    """Expand, contract deltas, collect and factor, then name bound indices readably.

    ``Sum(dy[i2]*KroneckerDelta(i, i2), i2) -> dy[i]``.
    """
    terms = expand(expr)
    for rule in TIDY_RULES:
        terms = rule.apply(terms, context)
    return readable(factor(terms, context), context.names_for)
