"""Named rewrite rules on the ``Term`` normal form. Each rule is a function ``(terms, context) ->
terms`` with a one-line docstring example; the simplifier records every application that changes the
expression as a ``Step``, and those steps are the derivation a reader (or LaTeX) follows.
None of them knows about a particular layer: the facts they use are read off the forward program.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .definitions import Definitions, Fact, Pattern, collect_definitions
from .ir import Program, ProgramError, free_indices, idx_size, index_size, indices_of
from .signs import nonnegative, program_signs
from .terms import Term, collect, combine, components, expand, power, readable, to_expr

FALLBACK_NAMES = ["k", "l", "m", "p", "q", "r", "s", "u", "w", "a", "b", "f", "g", "o"]


class Context:
    """What the rules may know about a program: its index names (for readable output) and, for
    the simplifier, its definitions as fold/unfold patterns and the reduction facts they imply."""

    def __init__(self, program: Program):
        self.program = program
        self._definitions: Definitions | None = None
        self.signs = program_signs(program)
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

    @property
    def definitions(self) -> Definitions:
        """The program's definitions as patterns, built on first use (the reverse pass's tidy-up
        never needs them)."""
        if self._definitions is None:
            self._definitions = Definitions()  # visible, partly filled, while facts are derived
            collect_definitions(self.program, self._definitions,
                                lambda terms: run_to_fixpoint(terms, self, REDUCE_RULES),
                                self.nonnegative)
        return self._definitions

    def nonnegative(self, expr: sp.Expr) -> bool:
        """Whether the program establishes ``expr >= 0`` (the side condition of sign rules)."""
        return nonnegative(expr, self.signs)

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
    """A named rewrite and its side condition: when the identity it applies holds, and how the
    rule makes sure of it before it fires (or why it needs nothing)."""

    name: str
    apply: Callable[[list[Term], Context], list[Term]]
    condition: str

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


def _within_range(value: sp.Expr, index: sp.Idx, program: Program) -> bool:
    """Whether every value ``value`` takes is one that ``index`` ranges over: an index over the
    same range, a label declared in ``range`` of its size, a flattened index or an argmax that
    covers exactly that range (every index starts at 0, as validation requires)."""
    try:
        return sp.expand(index_size(value, program) - idx_size(index)) == 0
    except ProgramError:
        return False


def _contract_once(term: Term, program: Program) -> Term | None:
    for position, (atom, _) in enumerate(term.factors):
        if not isinstance(atom, sp.KroneckerDelta):
            continue
        a, b = atom.args
        for old, new in ((a, b), (b, a)):
            if old in term.bound and isinstance(old, sp.Idx) and old not in free_indices(new) \
                    and _within_range(new, old, program):
                mapping = {old: new}
                factors = tuple((f.xreplace(mapping), e) for m, (f, e) in enumerate(term.factors)
                                if m != position)
                return Term(term.coeff, tuple(k for k in term.bound if k != old), factors)
    return None


def contract_delta(terms: list[Term], context: Context) -> list[Term]:
    """Sum over a delta's bound index: ``Sum(KroneckerDelta(k, l)*x[k], k) -> x[l]`` and, labels
    being declared in range, ``Sum(KroneckerDelta(c, Y[i])*p[i, c], c) -> p[i, Y[i]]``.
    Side condition: the other side of the delta takes only values the bound index ranges over
    (same range, or a label declared in it); otherwise the delta stays, as a guard."""
    result = []
    for term in terms:
        while (contracted := _contract_once(term, context.program)) is not None:
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


# -- matching ---------------------------------------------------------------------------------

def match(pattern: sp.Expr, target: sp.Expr, variables: set, binding: dict) -> dict | None:
    """Extend ``binding`` so that ``pattern`` with its ``variables`` substituted is ``target``."""
    if pattern in variables:
        if pattern in binding:
            return binding if binding[pattern] == target else None
        return {**binding, pattern: target}
    if not pattern.args or isinstance(pattern, sp.Idx):
        return binding if pattern == target else None
    if type(pattern) is not type(target) or len(pattern.args) != len(target.args):
        return None
    orders = [target.args]
    if isinstance(pattern, (sp.Add, sp.Mul)) and len(target.args) <= 4:
        orders = itertools.permutations(target.args)
    for args in orders:
        result = binding
        for p, t in zip(pattern.args, args):
            result = match(p, t, variables, result)
            if result is None:
                break
        if result is not None:
            return result
    return None


def match_factors(pattern: tuple, target: list, variables: set, binding: dict):
    """Bindings under which the factors ``pattern`` are exactly ``target`` (same exponents)."""
    if len(pattern) != len(target):
        return
    for order in itertools.permutations(target):
        result = binding
        for (p_atom, p_exp), (t_atom, t_exp) in zip(pattern, order):
            if p_exp != t_exp:
                result = None
                break
            result = match(p_atom, t_atom, variables, result)
            if result is None:
                break
        if result is not None:
            yield result


def instantiate(pattern: Pattern | Fact, binding: dict) -> sp.Expr | None:
    """The pattern's name at the matched indices, or None when the match leaves one of them
    unbound (``y[i, j] = x[i]*w[i]`` broadcasts over ``j``: ``x*w`` alone does not say which)."""
    if not set(indices_of(pattern.target)) <= set(binding):
        return None
    return pattern.target.xreplace(binding)


# -- rules that read the forward program -----------------------------------------------------

def unfold_terms(terms: list[Term], definitions: Definitions) -> list[Term]:
    result = []
    for term in terms:
        coeff, factors = term.coeff, []
        for atom, e in term.factors:
            pattern = definitions.monomial(str(atom.base.label)) \
                if isinstance(atom, sp.Indexed) and e.is_Integer else None
            if pattern is None:
                factors.append((atom, e))
                continue
            binding = dict(zip(pattern.target.indices, atom.indices))
            coeff *= pattern.coeff**e
            factors.extend((a.xreplace(binding), f * e) for a, f in pattern.factors)
        result.append(Term(coeff, term.bound, tuple(factors)))
    return result


def unfold(terms: list[Term], context: Context) -> list[Term]:
    """Replace a name defined as a product of names by that product, down to irreducible names:
    ``probs[i, c] -> counts[i, c]*counts_sum[i]**-1``, ``bnraw -> bndiff*bnvar_inv``."""
    return unfold_terms(terms, context.definitions)


def fold_atom(terms: list[Term], context: Context) -> list[Term]:
    """Fold a power or function of an expression that a forward name is defined as, power-aware:
    ``(bnvar[j] + eps)**(-3/2) -> bnvar_inv[j]**3``, ``exp(norm_logits[i, c]) -> counts[i, c]``."""
    result = []
    for term in terms:
        coeff, factors = term.coeff, []
        for atom, e in term.factors:
            for pattern in context.definitions.atoms:
                (p_atom, p_exp), = pattern.factors
                binding = match(p_atom, atom, pattern.variables, {})
                ratio = e / p_exp
                target = instantiate(pattern, binding) if binding is not None else None
                if target is not None and ratio.is_Integer:
                    coeff /= pattern.coeff**ratio
                    atom, e = target, ratio
                    break
            factors.append((atom, e))
        result.append(Term(coeff, term.bound, tuple(factors)))
    return result


def _groups(term: Term):
    """For each bound index, the factors that use it: what a sum over that index alone reduces
    (other indices in them, bound or free, are constants of that sum)."""
    for index in term.bound:
        yield index, [(a, e) for a, e in term.factors if index in free_indices(a)]


def fold_sum(terms: list[Term], context: Context) -> list[Term]:
    """Fold a sum that a forward name is defined as: ``Sum(counts[i, c], c) -> counts_sum[i]``,
    ``Sum(hprebn[i, j], i) -> n*bnmeani[j]``."""
    result = []
    for term in terms:
        changed = True
        while changed:
            changed = False
            for index, group in _groups(term):
                for pattern in context.definitions.sums:
                    if len(pattern.bound) != 1:
                        continue
                    binding = next(match_factors(pattern.factors, group, pattern.variables,
                                                 {pattern.bound[0]: index}), None)
                    target = instantiate(pattern, binding) if binding is not None else None
                    if target is None:
                        continue
                    rest = tuple(f for f in term.factors if f not in group)
                    term = Term(term.coeff / pattern.coeff, tuple(k for k in term.bound if k != index),
                                rest + ((target, sp.Integer(1)),))
                    changed = True
                    break
                if changed:
                    break
        result.append(term)
    return result


def reduction_fact(terms: list[Term], context: Context) -> list[Term]:
    """Apply a reduction fact derived from the program: ``Sum(bndiff[i, j], i) -> 0`` because
    ``Sum_i (hprebn - bnmeani) = n*bnmeani - n*bnmeani``."""
    result, pending = [], list(terms)
    while pending:
        term = pending.pop(0)
        for index, group in _groups(term):
            if len(group) != 1 or group[0][1] != 1:
                continue
            for fact in context.definitions.facts:
                binding = match(fact.target.xreplace({fact.index: index}), group[0][0],
                                fact.variables - {fact.index}, {})
                if binding is not None:
                    break
            else:
                continue
            rest = tuple(f for f in term.factors if f not in group)
            bound = tuple(k for k in term.bound if k != index)
            pending[:0] = [Term(term.coeff * t.coeff, bound,
                                rest + tuple((a.xreplace(binding), e) for a, e in t.factors))
                           for t in fact.terms]
            break
        else:
            result.append(term)
    return result


def _fold_once(term: Term, pattern: Pattern) -> Term | None:
    """Fold ``pattern`` into ``term`` as many times as its powers allow, or None."""
    def search(remaining, available, binding):
        if not remaining:
            yield binding
            return
        (p_atom, p_exp), rest = remaining[0], remaining[1:]
        for position, (t_atom, t_exp) in enumerate(available):
            if (t_exp / p_exp).is_positive and abs(t_exp) >= abs(p_exp):
                found = match(p_atom, t_atom, pattern.variables, binding)
                if found is not None:
                    yield from search(rest, available[:position] + available[position + 1:], found)

    for binding in search(list(pattern.factors), list(term.factors), {}):
        target = instantiate(pattern, binding)
        if target is None:
            continue
        factors = dict(term.factors)
        times = sp.Integer(min(int(factors[a.xreplace(binding)] / e) for a, e in pattern.factors))
        for atom, e in pattern.factors:
            factors[atom.xreplace(binding)] -= times * e
        factors[target] = factors.get(target, 0) + times
        return Term(term.coeff / pattern.coeff**times, term.bound,
                    tuple((a, e) for a, e in factors.items() if e != 0))
    return None


def _worth_folding(pattern: Pattern) -> bool:
    """A product of several names, or a single name's power other than 1 (``s**-1 -> r``)."""
    return len(pattern.factors) > 1 or pattern.factors[0][1] != 1


def fold(terms: list[Term], context: Context) -> list[Term]:
    """Fold products back into the forward names that hold them, largest first, moving factors
    into sums where that completes a product: ``counts*counts_sum**-1 -> probs``,
    ``bnvar_inv**3*bndiff[i]*Sum(bndiff[k]*g[k], k) -> bnvar_inv*bnraw[i]*Sum(bnraw[k]*g[k], k)``."""
    patterns = sorted((p for p in context.definitions.monomials if _worth_folding(p)),
                      key=lambda p: -len(p.factors))
    result = []
    for term in terms:
        term = combine(term)
        for pattern in patterns:
            while (folded := _fold_once(term, pattern)) is not None:
                term = combine(folded)
        result.append(term)
    return result


# Wherever a condition says "where the left side is defined": the left side is a value of the
# backward or of the forward it reads; where it is undefined (0/0, a fractional power of a negative
# number) there is no value to keep, and the rewrite may only extend the domain, never change a value.
CANCEL = Rule("cancel", cancel,
              "x**a * x**b = x**(a + b) wherever the left side is defined in real arithmetic "
              "(a fractional power of x < 0 is not; x/x at x = 0 is not); a delta's positive "
              "powers are itself since it is 0 or 1")
CONTRACT_DELTA = Rule("contract-delta", contract_delta,
                      "the other side of the delta takes only values in the bound index's range: "
                      "checked from the declared ranges and label classes; otherwise no rewrite")
SUM_OF_CONSTANT = Rule("sum-of-constant", sum_of_constant,
                       "none: a summand free of the index is added once per value of its range")
COLLECT = Rule("collect", collect_terms,
               "none: renaming bound indices and adding coefficients of equal terms")
UNFOLD = Rule("unfold", unfold,
              "only integer powers of a name are unfolded: (prod a**f)**e = prod a**(f*e) for "
              "integer e wherever the name is defined")
FOLD_ATOM = Rule("fold-power", fold_atom,
                 "only when the power is an integer multiple r of the definition's: "
                 "a**(p*r) = (a**p)**r for integer r wherever a**p (the saved name) is defined")
FOLD_SUM = Rule("fold-sum", fold_sum,
                "none: the sum is the name's definition, matched exactly")
REDUCTION_FACT = Rule("reduction-fact", reduction_fact,
                      "none beyond the rules': each fact is derived from the program's own "
                      "definitions by these same rules")
FOLD = Rule("fold", fold,
            "only whole, integer multiples of the name's product are folded: prod a**(f*t) = "
            "name**t for integer t wherever the name (computed by the forward) is defined")

# The steps that are not rules on terms, with their side conditions too.
DISTRIBUTE_CONDITION = ("products distribute over sums exactly; a power of a power becomes one "
                        "power only for an integer outer exponent or a base the program "
                        "establishes as >= 0 (symderive.signs)")
FACTOR_CONDITION = ("none: a factor every term has is pulled out (x**a*u + x**b*v = "
                    "x**min(a, b)*(...) wherever the left side is defined)")

# The phases of the simplifier (PyTensor's canonicalize / stabilize / specialize, in spirit):
# rewrite into irreducible forward names, reduce to a fixpoint, then fold back into saved names.
BASIS_RULES = (UNFOLD, FOLD_ATOM, CANCEL)
REDUCE_RULES = (CONTRACT_DELTA, SUM_OF_CONSTANT, FOLD_SUM, REDUCTION_FACT, CANCEL, COLLECT)
OUTPUT_RULES = (FOLD, FOLD_ATOM, CANCEL, COLLECT)
RULES = BASIS_RULES + REDUCE_RULES + (FOLD,)


def run_to_fixpoint(terms: list[Term], context: Context, rules, record=None):
    """Apply ``rules`` in order until none changes the terms; ``record(rule, before, after)``
    hears of every application that did. Rules that undo each other would loop: that is a bug."""
    for _ in range(50):
        changed = False
        for rule in rules:
            after = rule.apply(terms, context)
            if after != terms:
                if record is not None:
                    record(rule, terms, after)
                terms, changed = after, True
        if not changed:
            return terms
    raise RuntimeError(f"rules {[r.name for r in rules]} did not reach a fixpoint in 50 rounds")


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
        factors = tuple((atom, e - common_factors.get(atom, 0)) for atom, e in term.factors)
        rest.append(Term(sp.factor_terms(term.coeff / scale), term.bound,
                         tuple((atom, e) for atom, e in factors if e != 0)))
    pulled = sp.Mul(*[power(a, e) for a, e in common_factors.items()])
    return scale * pulled * to_expr(rest)


def tidy(expr: sp.Expr, context: Context) -> sp.Expr:
    """Expand, contract deltas, collect and factor, then name bound indices readably.

    ``Sum(dy[i2]*KroneckerDelta(i, i2), i2) -> dy[i]``.
    """
    terms = expand(expr, context.nonnegative)
    for rule in TIDY_RULES:
        terms = rule.apply(terms, context)
    return readable(factor(terms, context), context.names_for)
