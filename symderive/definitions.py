"""What a forward program says about its own names, as patterns the rewrite rules can use.

Every statement is expanded into terms and filed by shape: a product of other names (``probs =
counts*counts_sum_inv``) is a *monomial*, unfolded into a basis of irreducible names while
simplifying and folded back at the end; a power or function of something that is not a name
(``bnvar_inv = (bnvar + eps)**(-1/2)``, ``counts = exp(norm_logits)``) is an *atom* definition, folded
wherever that atom appears, power-aware; a scaled sum (``bnmeani = Sum(hprebn, i)/n``) folds sums;
and a sum of terms (``bndiff = hprebn - bnmeani``) yields *reduction facts*, found by simplifying
``Sum_i bndiff[i, j]`` with the rules themselves (here to 0). Nothing is specific to a layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .ir import Program, free_indices, indices_of, name_of
from .terms import Term, expand


@dataclass(frozen=True)
class Pattern:
    """``target == coeff * Sum_bound prod(atom**exponent)``, with ``variables`` free to match."""

    name: str
    target: sp.Expr
    coeff: sp.Expr
    factors: tuple[tuple[sp.Expr, sp.Expr], ...]
    bound: tuple[sp.Idx, ...] = ()

    @property
    def variables(self) -> set:
        return set(indices_of(self.target)) | set(self.bound)


@dataclass(frozen=True)
class Fact:
    """``Sum_index target == terms`` (``terms`` free of bound indices, often empty: zero)."""

    name: str
    target: sp.Expr
    index: sp.Idx
    terms: tuple[Term, ...]

    @property
    def variables(self) -> set:
        return set(indices_of(self.target))


@dataclass
class Definitions:
    monomials: list[Pattern] = field(default_factory=list)
    atoms: list[Pattern] = field(default_factory=list)
    sums: list[Pattern] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)

    def monomial(self, name: str) -> Pattern | None:
        return next((p for p in self.monomials if p.name == name), None)


def _is_name(atom: sp.Expr, program: Program) -> bool:
    return isinstance(atom, sp.Indexed) and name_of(atom) in program.names \
        and not program.integer(name_of(atom))


def collect_definitions(program: Program, definitions: Definitions, simplify_terms,
                        nonnegative) -> None:
    """Fill ``definitions`` from ``program`` in statement order; ``simplify_terms(terms)`` runs the
    reduction rules with the definitions found so far (a fact may rest on earlier facts), and
    ``nonnegative`` is what the program establishes about signs (for ``expand``)."""
    from .rules import unfold_terms  # the unfold rule, shared so definitions use the same basis

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
            elif term.factors and all(_is_name(a, program) for a, _ in term.factors):
                definitions.monomials.append(Pattern(name, lhs, term.coeff, term.factors))
            elif len(term.factors) == 1:
                definitions.atoms.append(Pattern(name, lhs, term.coeff, term.factors))
            continue
        for index in lhs.indices:
            summed = simplify_terms(expand(sp.Sum(statement.rhs, index), nonnegative))
            if all(not t.bound for t in summed) and \
                    all(index not in free_indices(a) for t in summed for a, _ in t.factors):
                definitions.facts.append(Fact(name, lhs, index, tuple(summed)))
