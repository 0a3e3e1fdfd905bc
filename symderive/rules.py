"""Named rewrite rules on the ``Term`` normal form. Each rule is a function ``(terms, context) ->
terms`` with a one-line docstring example; the simplifier records every application that changes the
expression as a ``Step``, and those steps are the derivation a reader (or LaTeX) follows.
None of them knows about a particular layer: the facts they use are read off the forward program.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from . import cases as case_split
from .cost import operation_count, printed
from .definitions import Definitions, Fact, Pattern, collect_definitions
from .ir import (
    Program,
    ProgramError,
    array_names,
    free_indices,
    idx_size,
    index_size,
    indices_of,
    name_of,
    remembered,
)
from .signs import nonnegative, positive, program_positives, program_signs
from .terms import (
    Term,
    canonical_atom,
    collect,
    combine,
    components,
    delta,
    expand,
    multiply,
    power,
    readable,
    to_expr,
)

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


def fold_sum(terms: list[Term], context: Context) -> list[Term]:
    """Fold a sum that a forward name is defined as, over one index or several jointly:
    ``Sum(counts[i, c], c) -> counts_sum[i]``, ``Sum(hprebn[i, j], i) -> n*bnmeani[j]``."""
    result = []
    for term in terms:
        changed = True
        while changed:
            changed = False
            for pattern in context.definitions.candidates("sums", *(a for a, _ in term.factors)):
                width = len(pattern.bound)
                for chosen, group in _groups(term, width):
                    binding = next((b for b in match_factors(
                        pattern.factors, group, pattern.variables, dict(zip(pattern.bound, chosen)))
                        if not _binds_summed(b, chosen, pattern.bound)), None)
                    target = instantiate(pattern, binding) if binding is not None else None
                    if target is None:
                        continue
                    rest = tuple(f for f in term.factors if f not in group)
                    term = Term(term.coeff / pattern.coeff,
                                tuple(k for k in term.bound if k not in chosen),
                                rest + ((target, sp.Integer(1)),))
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
        names = _names_read(term)
        for pattern in patterns:
            if not pattern.reads <= names:  # matching binds indices, never arrays
                continue
            while (folded := _fold_once(term, pattern)) is not None:
                term = combine(folded)
                names = _names_read(term)
        result.append(term)
    return result


def _names_read(term: Term) -> frozenset[str]:
    return frozenset().union(*(array_names(a) for a, _ in term.factors))


# -- rules for the output form: fewer ops, the same values ---------------------------------

def sign_abs(terms: list[Term], context: Context) -> list[Term]:
    """A value times its sign is its magnitude, and the other way round:
    ``x[i]*sign(x[i]) -> Abs(x[i])``, ``Abs(x[i])*sign(x[i]) -> x[i]``."""
    result = []
    for term in terms:
        factors = dict(combine(term).factors)
        for atom in [a for a in factors if isinstance(a, sp.sign)]:
            (u,) = atom.args
            for partner, becomes in ((u, sp.Abs(u)), (sp.Abs(u), u)):
                if factors.get(atom, sp.S.Zero).is_positive and factors.get(partner, sp.S.Zero).is_positive \
                        and factors[atom].is_integer and factors[partner].is_integer:
                    factors[atom] -= 1
                    factors[partner] -= 1
                    factors[canonical_atom(becomes)] = factors.get(canonical_atom(becomes), sp.S.Zero) + 1
        result.append(Term(term.coeff, term.bound,
                           tuple((a, e) for a, e in factors.items() if e != 0)))
    return result


def common_denominator(terms: list[Term], context: Context) -> list[Term]:
    """Put terms over the most negative power of a sum they share, when that leaves fewer terms:
    ``1/(1 + Abs(x)) - Abs(x)/(1 + Abs(x))**2 -> 1/(1 + Abs(x))**2``."""
    bases = {a for t in terms for a, e in t.factors
             if isinstance(a, sp.Add) and e.is_Integer and e < 0}
    for base in sorted(bases, key=str):
        lowest = min(dict(t.factors).get(base, sp.S.Zero) for t in terms)
        over = []
        for term in terms:
            e = dict(term.factors).get(base, sp.Integer(0))
            if not e.is_Integer or e == lowest:
                over.append(term)
                continue
            raised = Term(term.coeff, term.bound, tuple(f for f in term.factors if f[0] != base)
                          + ((base, lowest),))
            over += [combine(multiply(raised, part))
                     for part in expand(base ** (e - lowest), context.nonnegative)]
        over = collect(over)
        if len(over) < len(terms):
            return over
    return terms


# Odd functions: f(-u) = -f(u) for every real u, in floating point too (their implementations
# are symmetric), so a minus sign may move into the argument.
_ODD_FUNCTIONS = (sp.sign, sp.tanh, sp.sinh, sp.atan, sp.erf, sp.asinh, sp.sin, sp.tan)


def odd_sign(terms: list[Term], context: Context) -> list[Term]:
    """Move a term's minus sign into an odd function whose argument costs no more negated:
    ``-sign(t[i] - x[i]) -> sign(x[i] - t[i])``."""
    result = []
    for term in terms:
        if term.coeff.could_extract_minus_sign():
            for position, (atom, e) in enumerate(term.factors):
                if isinstance(atom, _ODD_FUNCTIONS) and e.is_Integer and e % 2 == 1 \
                        and sp.count_ops(-atom.args[0]) <= sp.count_ops(atom.args[0]):
                    flipped = canonical_atom(atom.func(-atom.args[0]))
                    factors = term.factors[:position] + ((flipped, e),) \
                        + term.factors[position + 1:]
                    term = Term(-term.coeff, term.bound, factors)
                    break
        result.append(term)
    return result


def _step_argument(arg: sp.Expr) -> sp.Expr:
    """The argument of a step (Heaviside, sign) with the same sign everywhere, simpler: a clipped
    value replaced by the value where the clip cannot change the sign, then a positive scale
    dropped."""
    c, rest = arg.as_coeff_Add()
    s, clipped = rest.as_coeff_Mul()
    if s in (1, -1) and isinstance(clipped, (sp.Max, sp.Min)) and len(clipped.args) == 2:
        numbers = [a for a in clipped.args if a.is_number]
        if len(numbers) == 1:
            (a,) = numbers
            (v,) = [x for x in clipped.args if x is not a]
            w = c + s * a  # the argument where the clip holds
            keeps = s * w < 0 if isinstance(clipped, sp.Max) else s * w > 0
            if keeps == sp.true:
                arg = c + s * v
    content, primitive = sp.factor_terms(arg).as_content_primitive()
    if content.is_Rational and content.is_positive and content != 1:
        arg = primitive
    return arg


def simpler_step(terms: list[Term], context: Context) -> list[Term]:
    """Simplify the argument of a step where its sign cannot change: ``Heaviside(1 - Max(-1,
    x), 0) -> Heaviside(1 - x, 0)`` (where the clip acts, both arguments are positive) and
    ``Heaviside(x/6 + 1/2, 0) -> Heaviside(x + 3, 0)`` (a positive scale)."""
    result = []
    for term in terms:
        factors = []
        for atom, e in term.factors:
            if isinstance(atom, (sp.Heaviside, sp.sign)):
                arg = _step_argument(atom.args[0])
                if arg != atom.args[0]:
                    atom = canonical_atom(atom.func(arg, *atom.args[1:]))
            factors.append((atom, e))
        result.append(Term(term.coeff, term.bound, tuple(factors)))
    return result


def _kink_definitions(program: Program) -> dict:
    """The program's elementwise names defined through a kink (``m[i, j] = Min(Abs(r[i, j]),
    delta)``): label -> (the definition's indices, its right-hand side)."""
    found = {}
    for statement in program.body:
        lhs, rhs = statement.lhs, statement.rhs
        if isinstance(lhs, sp.Indexed) and not statement.accumulate and rhs.has(*case_split.KINKS) \
                and not rhs.has(sp.Sum, sp.Product) and all(isinstance(k, sp.Idx) for k in lhs.indices) \
                and len(set(lhs.indices)) == len(lhs.indices):
            found[lhs.base.label] = (lhs.indices, rhs)
    return found


def _inline_kinks(expr: sp.Expr, definitions: dict) -> sp.Expr:
    """``expr`` with reads of kink-defined names replaced by their definitions, so the kinks
    they hide can be split on (a read under other indices renames the definition's)."""
    for _ in range(3):  # a kink-defined name may read another
        reads = {r for r in expr.atoms(sp.Indexed) if r.base.label in definitions}
        if not reads:
            break
        mapping = {}
        for read in reads:
            indices, rhs = definitions[read.base.label]
            mapping[read] = rhs.xreplace(dict(zip(indices, read.indices)))
        expr = expr.xreplace(mapping)
    return expr


def _common_factor(values: list[sp.Expr]) -> sp.Expr:
    """The product of the factors every non-zero value has (``_common``), read off each value's
    ``factor_terms`` form with integer powers only, so dividing by it cancels structurally."""
    dicts = []
    for value in values:
        if value != 0:
            powers = {}
            for factor in sp.Mul.make_args(sp.factor_terms(value)):
                base, e = factor.as_base_exp()
                if not factor.is_Number and e.is_Integer:
                    powers[base] = powers.get(base, 0) + e
            dicts.append(powers)
    return sp.Mul(*[b**e for b, e in _common(dicts).items() if e != 0]) if dicts else sp.S.One


def _case_forms(expr: sp.Expr, a: sp.Expr, kept: set) -> list[sp.Expr]:
    """The case forms of ``expr`` split on ``a`` whose pieces hold no kink but those in ``kept``
    (the written terms' own): a definition inlined for its kinks must be resolved by the split,
    or the rules that fold it back into its name would undo this one."""
    pieces = case_split.split(expr, a)
    if pieces is None or any(not piece.value.atoms(*case_split.KINKS) <= kept for piece in pieces):
        return []
    forms = []
    values = [piece.value for piece in pieces]
    numbers = [sp.factor_terms(v).as_coeff_Mul()[0] for v in values if v != 0]
    common = _common_factor(values)
    number = _common_number(numbers) if numbers else sp.S.One
    # a common factor outside first: of equally cheap forms, the one that reads it once wins;
    # the numbers' common divisor only where it makes a form cheaper
    for scale in dict.fromkeys([common, common * number, sp.S.One, number]):
        # distributed, but exp(a - b) kept whole: split, it overflows where it need not
        scaled = [case_split.Piece(sp.factor_terms(sp.expand(
            p.value / scale, power_exp=False, power_base=False, log=False)), p.upper, p.closed)
            for p in pieces]
        forms += [scale * form for form in case_split.as_cases(scaled, a)]
    return forms


def steps_to_cases(terms: list[Term], context: Context) -> list[Term]:
    """Write the terms that hold steps, signs, magnitudes or clips of one array read as one case
    split of it, when that costs fewer ops: ``slope*Heaviside(-x[i], 1)*dy[i] + Heaviside(x[i],
    0)*dy[i] -> Piecewise((slope, x[i] <= 0), (1, True))*dy[i]``, and a clip by constants as
    ``Max(lo, Min(hi, v))``."""
    definitions = getattr(context, "_kink_definitions", None)
    if definitions is None:
        definitions = context._kink_definitions = _kink_definitions(context.program)
    involved = [t for t in terms if not t.bound and any(
        isinstance(atom, case_split.KINKS) or atom.has(*case_split.KINKS)
        or isinstance(atom, sp.Indexed) and atom.base.label in definitions
        for atom, _ in t.factors)]
    if not involved:
        return terms
    written = to_expr(involved)
    inlined = _inline_kinks(written, definitions)
    best, cost = None, sp.count_ops(written)
    for a in case_split.variables(inlined):
        for form in _case_forms(inlined, a, written.atoms(*case_split.KINKS)):
            # costed as the terms it becomes: a case split times a sum distributes again
            candidate = collect(expand(form, context.nonnegative))
            form_cost = sp.count_ops(to_expr(candidate))
            if form_cost < cost:
                best, cost = candidate, form_cost
    if best is None:
        return terms
    return [t for t in terms if t not in involved] + best


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
                 "(symderive.signs): for a < 0, a**(-1) is defined, (a**(-1/2))**2 is not; at "
                 "a = 0 a fractional power's derivative is infinite where the left side's is "
                 "not")
FOLD_SUM = Rule("fold-sum", fold_sum,
                "none: the sum is the name's definition, matched exactly")
REDUCTION_FACT = Rule("reduction-fact", reduction_fact,
                      "none beyond the rules': each fact is derived from the program's own "
                      "definitions by these same rules")
FOLD = Rule("fold", fold,
            "only whole, integer multiples of the name's product are folded: prod a**(f*t) = "
            "name**t for integer t wherever the name (computed by the forward) is defined")

SIGN_ABS = Rule("sign-abs", sign_abs,
                "none: u*sign(u) = |u| and |u|*sign(u) = u for every real u (both 0 at u = 0)")
COMMON_DENOMINATOR = Rule("common-denominator", common_denominator,
                          "the sum B is non-zero wherever the left side is defined (it divides "
                          "there), so u/B**k = u*B**(m - k)/B**m; taken only when terms cancel")
ODD_SIGN = Rule("odd-sign", odd_sign,
                "the function is odd, f(-u) = -f(u) for every real u (sign, tanh, sinh, atan, "
                "erf, asinh, sin, tan), exactly in floating point as well")
SIMPLER_STEP = Rule("simpler-step", simpler_step,
                    "the new argument has the same sign as the old everywhere: a clip "
                    "Max(a, v) (Min(a, v)) is replaced by v only when, where it clips, the step's "
                    "argument has one sign for every clipped v, checked on the numbers; a scale "
                    "is dropped only when it is a positive rational")

CASES = Rule("cases", steps_to_cases,
              "exactly the same function of the array read a: every kink's deciding argument "
              "is linear in a with a coefficient of known sign and constant offset, the "
              "breakpoints are ordered by what the assumptions prove (refused otherwise), each "
              "kink takes one branch on each open interval and at each breakpoint, neighbouring "
              "pieces merge only when their values expand to the same expression, and a clamp "
              "Max(lo, Min(hi, v)) is written only for v = k*a + c with k > 0 meeting lo and "
              "hi at the breakpoints")

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
OUTPUT_RULES = (FOLD, FOLD_ATOM, SIMPLER_STEP, SIGN_ABS, CANCEL, COLLECT, COMMON_DENOMINATOR,
                ODD_SIGN, CASES)
RULES = BASIS_RULES + REDUCE_RULES + (FOLD, SIMPLER_STEP, SIGN_ABS, COMMON_DENOMINATOR, ODD_SIGN,
                                      CASES)


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


def _split_coefficient(coeff: sp.Expr) -> tuple[sp.Rational, dict]:
    number, powers = _coefficient_parts(coeff)
    return number, dict(powers)  # a fresh dict: callers add the term's own factors to it


# Imported here, with the section that uses it: the cost of a form and printed sort keys,
# remembered per subtree (the gather search costs many candidates built from shared parts).



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


# -- gather: the output form of a sum of elementwise products ---------------------------------

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


def _merge_contractions(monomials: list[Monomial], sums: dict) -> list[Monomial]:
    """Merge two sums over the same indices that share an operand and differ in the rest, when
    that costs fewer ops: ``Sum(M[i, k]*v[k], k) + Sum(N[i, k]*v[k], k) -> Sum((M[i, k] +
    N[i, k])*v[k], k)`` (one contraction instead of two)."""
    merged = True
    while merged:
        merged = False
        for a, b in itertools.combinations(monomials, 2):
            pa, pb = dict(a[1]), dict(b[1])
            sa = [x for x, e in pa.items() if x in sums and e == 1]
            sb = [x for x, e in pb.items() if x in sums and e == 1]
            if len(sa) != 1 or len(sb) != 1 or sums[sa[0]][0] != sums[sb[0]][0] \
                    or _deltas(sums[sa[0]][1]) != _deltas(sums[sb[0]][1]):
                continue  # a delta is a scatter or a slice: merge only sums with the same one
            (sa,), (sb,) = sa, sb
            if {x: e for x, e in pa.items() if x != sa} != {x: e for x, e in pb.items() if x != sb}:
                continue
            bound, fa = sums[sa]
            fb = sums[sb][1]
            shared = [f for f in fa if f in fb]
            if not shared:
                continue
            rest_a = [power(x, e) for x, e in fa if x not in dict(shared)]
            rest_b = [power(x, e) for x, e in fb if x not in dict(shared)]
            inner = a[0] * sp.Mul(*rest_a) + b[0] * sp.Mul(*rest_b)
            atom = sp.Sum(sp.Mul(*[power(x, e) for x, e in shared]) * inner, *bound)
            others = {x: e for x, e in pa.items() if x != sa}
            candidate = (sp.Integer(1), _sorted({**others, atom: 1}))
            if operation_count(_product(*candidate)) >= \
                    operation_count(_product(*a) + _product(*b)):
                continue
            sums[atom] = (bound, tuple(shared) + ((inner, sp.Integer(1)),))
            monomials = [m for m in monomials if m is not a and m is not b] + [candidate]
            merged = True
            break
    return monomials


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


GATHER_CONDITION = ("none: distributivity read backwards, a*u + a*v = a*(u + v), and "
                    "q*a + q = (1 + a)*q, wherever the left side is defined; two sums over the "
                    "same indices add under one sum, Sum(a*u) + Sum(a*v) = Sum(a*(u + v))")


def tidy(expr: sp.Expr, context: Context) -> sp.Expr:
    """Expand, contract deltas, collect and factor, then name bound indices readably.

    ``Sum(dy[i2]*KroneckerDelta(i, i2), i2) -> dy[i]``.
    """
    terms = expand(expr, context.nonnegative)
    for rule in TIDY_RULES:
        terms = rule.apply(terms, context)
    return readable(factor(terms, context), context.names_for)
