"""The rewrite rules that reduce the normal form, and their machinery. ``Rule`` is a named rewrite
with its side condition; ``Context`` is what rules may know of a program (its definitions as
patterns, the reduction facts they imply, signs); ``run_to_fixpoint`` applies rules until none
changes the terms. The rules here put a gradient into irreducible forward names (``unfold``,
``fold-power``) and reduce it: contract deltas, collect, fold sums into the names that hold them
and apply the reduction facts the forward implies (``Sum_i bndiff[i, j] = 0``). None knows a
particular layer.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from ..program.ir import (
    Program,
    ProgramError,
    free_indices,
    idx_size,
    index_size,
    indices_of,
    name_of,
    remembered,
)
from ..program.signs import nonnegative, positive, program_positives, program_signs
from .definitions import Definitions, Fact, Pattern, collect_definitions, unfold_terms
from .terms import Term, collect, combine, delta

FALLBACK_NAMES = ["k", "l", "m", "p", "q", "r", "s", "u", "w", "a", "b", "f", "g", "o"]


class Context:
    """What the rules may know about a program: its index names (for readable output) and, for
    the simplifier, its definitions as fold/unfold patterns and the reduction facts they imply."""

    def __init__(self, program: Program):
        self.program = program
        self._definitions: Definitions | None = None
        self.signs = program_signs(program)
        self.positives = program_positives(program, self.signs)
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
                                lambda terms: reduce_for_fact(terms, self),
                                self.nonnegative)
        return self._definitions

    def nonnegative(self, expr: sp.Expr) -> bool:
        """Whether the program establishes ``expr >= 0`` (the side condition of sign rules)."""
        return nonnegative(expr, self.signs)

    def positive(self, expr: sp.Expr) -> bool:
        """Whether the program establishes ``expr > 0``."""
        return positive(expr, self.positives, self.signs)

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


@remembered(maxsize=1 << 15)  # asked of every factor at every fixpoint round
def _reads_arrays(atom: sp.Expr) -> bool:
    return atom.has(sp.Indexed, sp.Idx)


def cancel(terms: list[Term], context: Context) -> list[Term]:
    """Combine powers of the same factor: ``p[i, c] * p[i, c]**-1 -> 1``, ``s**-2 * s -> s**-1``."""
    result = []
    for term in terms:
        term = combine(term)
        scalars = [(a, e) for a, e in term.factors
                   if not isinstance(a, sp.Indexed) and not _reads_arrays(a)]  # (a read reads)
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


def _replaced(atom: sp.Expr, old: sp.Idx, new: sp.Expr) -> sp.Expr:
    """``atom.xreplace({old: new})``; a delta of two indices is rebuilt by ``delta``, which
    skips SymPy's costly evaluation where it cannot decide anything."""
    if isinstance(atom, sp.KroneckerDelta) and old in atom.args and \
            all(type(x) is sp.Idx for x in atom.args):
        return delta(*[new if x == old else x for x in atom.args])
    return atom.xreplace({old: new})


def _contract_once(term: Term, program: Program) -> Term | None:
    for position, (atom, _) in enumerate(term.factors):
        if not isinstance(atom, sp.KroneckerDelta):
            continue
        a, b = atom.args
        for old, new in ((a, b), (b, a)):
            if old in term.bound and isinstance(old, sp.Idx) and old not in free_indices(new) \
                    and _within_range(new, old, program):
                factors = tuple((_replaced(f, old, new), e)
                                for m, (f, e) in enumerate(term.factors) if m != position)
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
        if not idle and isinstance(term.coeff, sp.Basic):
            result.append(term)  # (the same term that multiplying by 1 would rebuild)
            continue
        coeff = term.coeff * sp.Mul(*[idx_size(k) for k in idle])
        result.append(Term(coeff, tuple(k for k in term.bound if k in used), term.factors))
    return result


def collect_terms(terms: list[Term], context: Context) -> list[Term]:
    """Add terms that are equal up to the names of their bound indices: ``x[i] - x[i] -> 0``."""
    return collect(terms)


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


def unfold(terms: list[Term], context: Context) -> list[Term]:
    """Replace a name defined as a product of names by that product, down to irreducible names:
    ``probs[i, c] -> counts[i, c]*counts_sum[i]**-1``, ``bnraw -> bndiff*bnvar_inv``."""
    return unfold_terms(terms, context.definitions)


def fold_atom(terms: list[Term], context: Context) -> list[Term]:
    """Fold a power or function of an expression that a forward name is defined as, power-aware:
    ``(bnvar[j] + eps)**(-3/2) -> bnvar_inv[j]**3``, ``exp(norm_logits[i, c]) -> counts[i, c]``,
    and, for a base the program establishes as positive, a fractional multiple of the power:
    ``(bnvar[j] + eps)**(-1/4) -> bnvar_inv[j]**(1/2)``."""
    result = []
    for term in terms:
        coeff, factors = term.coeff, []
        for atom, e in term.factors:
            for pattern in context.definitions.candidates("atoms", atom):
                (p_atom, p_exp), = pattern.factors
                binding = match(p_atom, atom, pattern.variables, {})
                ratio = e / p_exp
                target = instantiate(pattern, binding) if binding is not None else None
                # a**(p*r) = (a**p)**r for integers p and r, else only where a > 0: for
                # a < 0, a**(-1) is defined and (a**(-1/2))**2 is not; at a = 0 the values
                # agree, but Max(x, 0) as (Max(x, 0)**2)**(1/2) has an infinite derivative
                # there, which a double backward multiplies by 0
                if target is not None and (ratio.is_Integer and p_exp.is_Integer or
                                           ratio.is_Rational and context.positive(atom)):
                    coeff /= pattern.coeff**ratio
                    atom, e = target, ratio
                    break
            factors.append((atom, e))
        result.append(Term(coeff, term.bound, tuple(factors)))
    return result


def _groups(term: Term, width: int = 1):
    """For each ordered choice of ``width`` bound indices, the factors that use any of them: what
    a sum over those indices alone reduces (other indices in them, bound or free, are constants of
    that sum)."""
    for chosen in itertools.permutations(term.bound, width):
        yield chosen, [(a, e) for a, e in term.factors
                       if any(k in free_indices(a) for k in chosen)]


def _binds_summed(binding: dict, summed, own=()) -> bool:
    """Whether a match bound a pattern variable other than its ``own`` summed ones to something
    that uses a ``summed`` index: the sum would then not be the pattern's (``Sum_k bndiff[k, k]``
    is a diagonal, not a column sum)."""
    summed = set(summed)
    return any(variable not in own and summed & set(free_indices(value))
               for variable, value in binding.items())


def _without(factors: tuple, group: list, outer: tuple, binding: dict) -> tuple | None:
    """``factors`` less ``group`` and less each of ``outer`` instantiated by ``binding`` (with its
    exponent), or None where one of ``outer`` is not there as it is, is not fully bound, or binds
    an index inside it named like one the binding brings (``Sum(ex[t, _a0], _a0)`` with ``t`` bound
    to ``_a0`` would read the diagonal)."""
    rest = [f for f in factors if f not in group]
    given = {k.label for value in binding.values() for k in free_indices(value)}
    for atom, exponent in outer:
        if not set(free_indices(atom)) <= set(binding):
            return None
        inside = {limit[0].label for node in sp.preorder_traversal(atom)
                  if isinstance(node, ExprWithLimits) for limit in node.limits}
        if inside & given:  # an index the atom binds would capture one the binding brings
            return None
        wanted = (atom.xreplace(binding), exponent)
        if wanted not in rest:
            return None
        rest.remove(wanted)
    return tuple(rest)


def fold_sum(terms: list[Term], context: Context) -> list[Term]:
    """Fold a sum that a forward name is defined as, over one index or several jointly:
    ``Sum(counts[i, c], c) -> counts_sum[i]``, ``Sum(hprebn[i, j], i) -> n*bnmeani[j]``; a
    contraction re-expanded in a gradient reads the saved name back, with the definition's
    factors that are constant in its sum found among the term's others: attention's row sum
    ``Sum_s P*dP`` with ``dP = dO V^T`` inlined, ``Sum_{s, e} ex*V*dO/den``, is FlashAttention's
    ``Sum_e O*dO`` (``O = Sum_s ex*V/den``)."""
    result = []
    for term in terms:
        changed = True
        while changed:
            changed = False
            for pattern in context.definitions.candidates("sums", *(a for a, _ in term.factors)):
                width, own = len(pattern.bound), set(pattern.bound)
                # factors of the definition constant in its sum (O = Sum_s ex*V/den: den) are
                # outside the term's group; they must be among the rest of its factors
                inner = tuple(f for f in pattern.factors if own & set(free_indices(f[0])))
                outer = tuple(f for f in pattern.factors if f not in inner)
                for chosen, group in _groups(term, width):
                    found = next(((b, left) for b in match_factors(
                        inner, group, pattern.variables, dict(zip(pattern.bound, chosen)))
                        if not _binds_summed(b, chosen, pattern.bound)
                        for left in [_without(term.factors, group, outer, b)]
                        if left is not None), None)
                    target = instantiate(pattern, found[0]) if found is not None else None
                    if target is None:
                        continue
                    term = Term(term.coeff / pattern.coeff,
                                tuple(k for k in term.bound if k not in chosen),
                                found[1] + ((target, sp.Integer(1)),))
                    changed = True
                    break
                if changed:
                    break
        result.append(term)
    return result


def reduction_fact(terms: list[Term], context: Context) -> list[Term]:
    """Apply a reduction fact derived from the program, over one index or several jointly:
    ``Sum(bndiff[i, j], i) -> 0`` because ``Sum_i (hprebn - bnmeani) = n*bnmeani - n*bnmeani``,
    and ``Sum(xc[i, g, h, l], h, l) -> 0`` for a mean over ``(h, l)``."""
    result, pending = [], list(terms)
    while pending:
        term = pending.pop(0)
        names = {name_of(a) for a, _ in term.factors if isinstance(a, sp.Indexed)}
        for fact in context.definitions.facts_about(names):
            found = None
            for chosen, group in _groups(term, len(fact.indices)):
                if len(group) != 1 or group[0][1] != 1:
                    continue
                binding = match(fact.target.xreplace(dict(zip(fact.indices, chosen))), group[0][0],
                                fact.variables - set(fact.indices), {})
                if binding is not None and not _binds_summed(binding, chosen):
                    found = chosen, group, binding
                    break
            if found is not None:
                break
        else:
            result.append(term)
            continue
        chosen, group, binding = found
        rest = tuple(f for f in term.factors if f not in group)
        bound = tuple(k for k in term.bound if k not in chosen)
        pending[:0] = [Term(term.coeff * t.coeff, bound,
                            rest + tuple((a.xreplace(binding), e) for a, e in t.factors))
                       for t in fact.terms]
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
                 "only when the power is a multiple r of the definition's power p: a**(p*r) = "
                 "(a**p)**r for integers p and r wherever the left side is defined, and for "
                 "rational p and r only where the program establishes a > 0 "
                 "(symderive.program.signs): for a < 0, a**(-1) is defined, (a**(-1/2))**2 is not; at "
                 "a = 0 a fractional power's derivative is infinite where the left side's is "
                 "not")


FOLD_SUM = Rule("fold-sum", fold_sum,
                "none: the sum is the name's definition, matched exactly (its factors constant "
                "in the summed indices matched among the term's other factors, with their "
                "exponents)")


REDUCTION_FACT = Rule("reduction-fact", reduction_fact,
                      "none beyond the rules': each fact is derived from the program's own "
                      "definitions by these same rules")


# The phases of the simplifier (PyTensor's canonicalize / stabilize / specialize, in spirit):
# rewrite into irreducible forward names, reduce to a fixpoint, then fold back into saved names.
BASIS_RULES = (UNFOLD, FOLD_ATOM, CANCEL)


REDUCE_RULES = (CONTRACT_DELTA, SUM_OF_CONSTANT, FOLD_SUM, REDUCTION_FACT, CANCEL, COLLECT)


def run_to_fixpoint(terms: list[Term], context: Context, rules, record=None):
    """Apply ``rules`` in order until none changes the terms; ``record(rule, before, after)``
    hears of every application that did. Rules that undo each other would loop: that is a bug.
    It stops as soon as every rule has seen the current terms without changing them, rather than
    after a whole further round: the rules run in the same order, so the result is the same."""
    unchanged = 0  # rules applied in a row since the terms last changed
    for application in range(50 * len(rules)):
        rule = rules[application % len(rules)]
        after = rule.apply(terms, context)
        if after != terms:
            if record is not None:
                record(rule, terms, after)
            terms, unchanged = after, 0
        else:
            unchanged += 1
        if unchanged == len(rules):
            return terms
    if not rules:
        return terms
    raise RuntimeError(f"rules {[r.name for r in rules]} did not reach a fixpoint in 50 rounds")


def reduce_for_fact(terms: list[Term], context: Context) -> list[Term]:
    """The reduction rules run to a fixpoint on ``terms`` (a statement summed over the axes of a
    candidate fact), as ``collect_definitions`` asks, skipped where their result provably keeps
    a summed term, so that no fact can come of it (the caller keeps none then).

    The proof, for terms each summed over exactly one index, none holding a delta, while the
    program has given no sum pattern and no fact yet: contract-delta then only cancels, and
    fold-sum and reduction-fact change nothing, so the fixpoint is cancel, sum-of-constant and
    collect. A term that after cancel still reads its index in a factor ("live") is never
    touched by sum-of-constant; it can go only by collect adding it to alpha-equivalent live
    terms (never to an idle one, which does not read the index), and those groups and their
    coefficient sums are the ones ``collect(cancel(terms))`` forms here. A live term left with
    a number for coefficient then stays: cancel is idempotent, and collect of collected terms
    merges nothing more. So the fixpoint ends with a summed term exactly when this does."""
    definitions = context.definitions
    if terms and not definitions.sums and not definitions.facts and all(
            len(term.bound) == 1 and not any(isinstance(atom, sp.KroneckerDelta)
                                             for atom, _ in term.factors) for term in terms):
        collected = collect(cancel(terms, context))
        if any(term.bound and term.coeff.is_Number and any(
                term.bound[0] in free_indices(atom) for atom, _ in term.factors)
               for term in collected):
            return collected  # a summed term stays: no fact (see above)
    return run_to_fixpoint(terms, context, REDUCE_RULES)


# What the reverse pass applies to each adjoint contribution: enough to remove the deltas that
# differentiation introduces, nothing that would change which forward values are read.
TIDY_RULES = (CANCEL, CONTRACT_DELTA, SUM_OF_CONSTANT, COLLECT)
