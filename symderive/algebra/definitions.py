"""What a forward program says about its own names, as patterns the rewrite rules can use.

Every statement is expanded into terms and filed by shape: a product of other names (``probs =
counts*counts_sum_inv``) is a *monomial*, unfolded into a basis of irreducible names while
simplifying and folded back at the end; a power or function of something that is not a name
(``bnvar_inv = (bnvar + eps)**(-1/2)``, ``counts = exp(norm_logits)``) is an *atom* definition, folded
wherever that atom appears, power-aware; a scaled sum (``bnmeani = Sum(hprebn, i)/n``) folds sums;
and a sum of terms (``bndiff = hprebn - bnmeani``) yields *reduction facts*, found by simplifying
``Sum_i bndiff[i, j]`` with the rules themselves (here to 0), and, where the program reduces over
several axes at once (``mu[i, g] = Sum(x[i, g, h, l], h, l)/(Cg*L)``), over those axes jointly
(``Sum_{h, l} xc[i, g, h, l] = 0``). Nothing is specific to a layer.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from ..program.ir import Program, array_names, free_indices, indices_of, name_of
from .terms import Term, expand, to_expr


@dataclass(frozen=True)
class Pattern:
    """``target == coeff * Sum_bound prod(atom**exponent)``, with ``variables`` free to match."""

    name: str
    target: sp.Expr
    coeff: sp.Expr
    factors: tuple[tuple[sp.Expr, sp.Expr], ...]
    bound: tuple[sp.Idx, ...] = ()
    exponentiated: bool = False  # the factors are exp(target), not target (``exponentials``)

    @cached_property
    def variables(self) -> frozenset:
        return frozenset(indices_of(self.target)) | frozenset(self.bound)

    @cached_property
    def reads(self) -> frozenset[str]:
        """The arrays the pattern reads: whatever it matches reads them all."""
        return frozenset(name_of(x) for atom, _ in self.factors for x in atom.atoms(sp.Indexed))


@dataclass(frozen=True)
class Fact:
    """``Sum_indices target == terms`` (``terms`` free of the summed indices and of bound ones,
    often empty: zero); ``indices`` are one axis of ``target`` or several summed jointly."""

    name: str
    target: sp.Expr
    indices: tuple[sp.Idx, ...]
    terms: tuple[Term, ...]

    @cached_property
    def variables(self) -> frozenset:
        return frozenset(indices_of(self.target))


@dataclass
class Definitions:
    monomials: list[Pattern] = field(default_factory=list)
    # exp of a name defined as a sum with logs in it, as a product: y = z - m - log(s) gives
    # exp(y) == exp(z - m)*s**-1 (log_softmax's softmax, read back from its output)
    exponentials: list[Pattern] = field(default_factory=list)
    atoms: list[Pattern] = field(default_factory=list)
    sums: list[Pattern] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    # Lookup tables over the lists above, extended as the lists grow (they grow while facts are
    # derived), so a rule asks for the few patterns that can match instead of trying them all.
    _by_name: dict = field(default_factory=dict, repr=False, compare=False)
    _by_read: dict = field(default_factory=dict, repr=False, compare=False)
    _asked: dict = field(default_factory=dict, repr=False, compare=False)  # answers, remembered

    def monomial(self, name: str) -> Pattern | None:
        table, seen = self._by_name.setdefault("monomials", ({}, [0]))
        for pattern in self.monomials[seen[0]:]:
            table.setdefault(pattern.name, pattern)  # the first, as a scan would find it
        seen[0] = len(self.monomials)
        return table.get(name)

    def candidates(self, kind: str, *exprs: sp.Expr) -> list[Pattern]:
        """The patterns of ``kind`` (``"atoms"`` or ``"sums"``) that may match ``exprs`` (an atom,
        or the factors of a term), in the order they were found: a pattern matches only what
        reads every array it reads (matching binds indices, never arrays)."""
        patterns = getattr(self, kind)
        asked = self._asked.get((kind, exprs))
        if asked is not None and asked[0] == len(patterns):  # none found since: the same answer
            return asked[1]
        table, seen = self._by_read.setdefault(kind, ({}, [0]))
        for position in range(seen[0], len(patterns)):
            reads = patterns[position].reads
            table.setdefault(min(reads) if reads else None, []).append(position)
        seen[0] = len(patterns)
        names = set().union(*map(array_names, exprs))
        found = set(table.get(None, ()))
        for name in names:
            found.update(table.get(name, ()))
        result = [patterns[m] for m in sorted(found) if patterns[m].reads <= names]
        self._asked[(kind, exprs)] = (len(patterns), result)
        return result

    def facts_about(self, names) -> list[Fact]:
        """The facts about the arrays ``names``, in the order they were found: a fact sums its
        target array, so it matches only a factor that reads that array."""
        table, seen = self._by_name.setdefault("facts", ({}, [0]))
        for position in range(seen[0], len(self.facts)):
            table.setdefault(name_of(self.facts[position].target), []).append(position)
        seen[0] = len(self.facts)
        return [self.facts[m] for m in sorted(m for name in names for m in table.get(name, ()))]


def _is_name(atom: sp.Expr, program: Program) -> bool:
    return isinstance(atom, sp.Indexed) and name_of(atom) in program.names \
        and not program.integer(name_of(atom))


def collect_definitions(program: Program, definitions: Definitions, simplify_terms,
                        nonnegative) -> None:
    """Fill ``definitions`` from ``program`` in statement order; ``simplify_terms(terms)`` runs the
    reduction rules with the definitions found so far (a fact may rest on earlier facts), and
    ``nonnegative`` is what the program establishes about signs (for ``expand``)."""
    for statement in program.body:
        lhs = statement.lhs
        if statement.accumulate or not isinstance(lhs, sp.Indexed) or \
                not all(isinstance(k, sp.Idx) for k in lhs.indices):
            continue
        terms = unfold_terms(expand(statement.rhs, nonnegative), definitions)
        name = statement.name
        if len(terms) == 1:
            (term,) = terms
            if term.bound:
                definitions.sums.append(Pattern(name, lhs, term.coeff, term.factors, term.bound))
            elif term.factors and _product_to_fold(statement.rhs, program, nonnegative):
                definitions.monomials.append(Pattern(name, lhs, term.coeff, term.factors))
            elif len(term.factors) == 1:
                definitions.atoms.append(Pattern(name, lhs, term.coeff, term.factors))
            continue
        exponential = _exponential(name, lhs, terms)
        if exponential is not None:
            definitions.exponentials.append(exponential)
        single = []
        for axes in _candidate_axes(lhs, definitions):
            if len(axes) > 1 and any(k in single for k in axes):
                continue  # follows from the single-axis fact, applied inside the joint sum
            summed = simplify_terms(expand(sp.Sum(statement.rhs, *axes), nonnegative))
            if all(not t.bound for t in summed) and \
                    all(k not in free_indices(a) for t in summed for a, _ in t.factors for k in axes):
                definitions.facts.append(Fact(name, lhs, axes, tuple(summed)))
                if len(axes) == 1:
                    single.append(axes[0])


def _product_to_fold(rhs: sp.Expr, program: Program, nonnegative) -> bool:
    """Whether a definition written as one product is read back as its name where its factors
    appear: a product of names (``probs = counts*counts_sum_inv``), or of factors none of which
    reads an array bare (a masked ``exp(A - m)*Heaviside(t - s, 1)``). An array times other
    factors is left to the rules, which write it better (softsign's ``x/(1 + |x|)``: its
    derivative ``1/(1 + |x|)**2``, not ``(1 - sign(x)*y)/(1 + |x|)``)."""
    (term,) = expand(rhs, nonnegative)  # as written, before names are unfolded
    if all(_is_name(a, program) for a, _ in term.factors):
        return bool(term.factors)
    return len(term.factors) > 1 and not any(isinstance(a, sp.Indexed) for a, _ in term.factors)


def _exponential(name: str, lhs: sp.Indexed, terms: list[Term]) -> Pattern | None:
    """``exp(lhs)`` as a product, for a definition that adds logs (each with a rational
    coefficient) to other terms: ``exp(a + c*log(b)) == exp(a)*b**c``. Sound wherever the forward
    value is defined (its logs are of positive values); None for any other definition."""
    logs, rest = [], []
    for term in terms:
        if not term.bound and len(term.factors) == 1 and isinstance(term.factors[0][0], sp.log) \
                and term.factors[0][1] == 1 and term.coeff.is_Rational:
            logs.append((term.factors[0][0].args[0], term.coeff))
        elif term.bound or any(isinstance(a, sp.log) for a, _ in term.factors):
            return None
        else:
            rest.append(term)
    if not logs or not rest:
        return None
    return Pattern(name, lhs, sp.S.One, ((sp.exp(to_expr(rest)), sp.S.One), *logs),
                   exponentiated=True)


def _candidate_axes(lhs: sp.Indexed, definitions: Definitions):
    """The axes of ``lhs`` a fact may sum over: each one alone, then every set of as many axes as
    some reduction of the program sums jointly (only those can fold back into a name)."""
    yield from ((k,) for k in lhs.indices)
    widths = sorted({len(p.bound) for p in definitions.sums if len(p.bound) > 1})
    for width in widths:
        yield from itertools.combinations(lhs.indices, width)


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
