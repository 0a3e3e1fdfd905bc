"""The rewrite rules of the output phase: fold products back into the saved forward names that hold
them, and write steps, signs, magnitudes and clips in fewer operations (a value times its sign
is its magnitude, a minus sign moves into an odd function, sums of steps of one array read
become one case split). Each states its side condition, as the reduction rules do.
"""
from __future__ import annotations

import sympy as sp

from ..program.ir import Program, array_names
from . import cases as case_split
from .definitions import Pattern
from .factoring import _common, _common_number
from .reduction import CANCEL, COLLECT, FOLD_ATOM, Context, Rule, instantiate, match
from .terms import Term, canonical_atom, collect, combine, expand, multiply, to_expr


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
        if pattern.exponentiated:
            target = sp.exp(target)
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
    into sums where that completes a product (and exponentials of names defined with logs:
    ``exp(z - m)*s**-1 -> exp(y)`` for ``y = z - m - log(s)``): ``counts*counts_sum**-1 -> probs``,
    ``bnvar_inv**3*bndiff[i]*Sum(bndiff[k]*g[k], k) -> bnvar_inv*bnraw[i]*Sum(bnraw[k]*g[k], k)``."""
    patterns = sorted([p for p in context.definitions.monomials if _worth_folding(p)] +
                      context.definitions.exponentials, key=lambda p: -len(p.factors))
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


FOLD = Rule("fold", fold,
            "only whole, integer multiples of the name's product are folded: prod a**(f*t) = "
            "name**t for integer t wherever the name (computed by the forward) is defined; a "
            "name defined as a + c*log(b) folds exp(a)*b**c into exp(name), which holds "
            "wherever the forward computes the log (b > 0)")


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


OUTPUT_RULES = (FOLD, FOLD_ATOM, SIMPLER_STEP, SIGN_ABS, CANCEL, COLLECT, COMMON_DENOMINATOR,
                ODD_SIGN, CASES)
