"""Every named rule fires on its documented example and is sound: before and after agree
numerically on forward values computed by the program itself (facts like ``Sum_i bndiff = 0`` only
hold there), evaluated by the naive loop oracle."""
import dataclasses

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import (
    Abs,
    Heaviside,
    Idx,
    IndexedBase,
    KroneckerDelta,
    Max,
    Min,
    Rational,
    Sum,
    sign,
    symbols,
    tanh,
)

from symderive import Builder, normal, uniform
from symderive.algebra.factoring import factor, gather
from symderive.algebra.reduction import Context
from symderive.algebra.rules import RULES
from symderive.algebra.simplify import derive_backward, simplify
from symderive.algebra.terms import collect, expand, to_expr
from symderive.codegen.emit import module_source
from symderive.program.load import load
from symderive.program.ops import Piecewise
from symderive.verify.check import example_inputs, load_module

from ..interpret import tensor

n, V, H, d = symbols("n V H d", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, k, c, j, jf, kf = Idx("i", n), Idx("k", n), Idx("c", V), Idx("j", H), Idx("j", d), Idx("k", d)
(probs, counts, counts_sum, Y, hprebn, bnmeani, bndiff, bnvar, bnvar_inv, bnraw, dhpreact, xc,
 dh, h) = symbols("probs counts counts_sum Y hprebn bnmeani bndiff bnvar bnvar_inv bnraw dhpreact "
                  "xc dh h", cls=IndexedBase)
SMALL = {"n": 5, "V": 4, "H": 3, "d": 4}

EXAMPLES = [
    ("cancel", "cross_entropy",
     sp.Mul(probs[i, c], sp.Pow(probs[i, c], -1), counts[i, c], evaluate=False), counts[i, c]),
    ("contract-delta", "cross_entropy", Sum(KroneckerDelta(c, Y[i]) * probs[i, c], c), probs[i, Y[i]]),
    ("sum-of-constant", "batchnorm", Sum(bnmeani[j], i), n * bnmeani[j]),
    ("collect", "batchnorm", Sum(hprebn[i, j], i) - Sum(hprebn[k, j], k), sp.S.Zero),
    ("unfold", "cross_entropy", probs[i, c], counts[i, c] / counts_sum[i]),
    ("fold-power", "batchnorm", (bnvar[j] + eps) ** Rational(-3, 2), bnvar_inv[j] ** 3),
    ("fold-power", "batchnorm", (bnvar[j] + eps) ** Rational(-1, 4), bnvar_inv[j] ** Rational(1, 2)),
    ("fold-sum", "cross_entropy", Sum(counts[i, c], c), counts_sum[i]),
    ("fold-sum", "batchnorm", Sum(hprebn[i, j], i), n * bnmeani[j]),
    ("reduction-fact", "batchnorm", Sum(bndiff[i, j], i), sp.S.Zero),
    ("reduction-fact", "layernorm", Sum(xc[i, jf], jf), sp.S.Zero),
    ("fold", "cross_entropy", counts[i, c] / counts_sum[i], probs[i, c]),
    ("fold", "batchnorm", bnvar_inv[j] ** 3 * bndiff[i, j] * Sum(bndiff[k, j] * dhpreact[k, j], k),
     bnvar_inv[j] * bnraw[i, j] * Sum(bnraw[k, j] * dhpreact[k, j], k)),
    ("sign-abs", "batchnorm", hprebn[i, j] ** 3 * sign(hprebn[i, j]),
     Abs(hprebn[i, j]) * hprebn[i, j] ** 2),
    ("sign-abs", "batchnorm", Abs(bndiff[i, j]) * sign(bndiff[i, j]) * bnvar_inv[j],
     bndiff[i, j] * bnvar_inv[j]),
    ("common-denominator", "batchnorm",
     1 / (1 + Abs(hprebn[i, j])) - Abs(hprebn[i, j]) / (1 + Abs(hprebn[i, j])) ** 2,
     (1 + Abs(hprebn[i, j])) ** -2),
    ("odd-sign", "batchnorm", -sign(bnmeani[j] - hprebn[i, j]) - tanh(bnmeani[j] - hprebn[i, j]),
     sign(hprebn[i, j] - bnmeani[j]) + tanh(hprebn[i, j] - bnmeani[j])),
    ("simpler-step", "batchnorm",
     Heaviside(1 - Max(-1, hprebn[i, j]), 0) * Heaviside(hprebn[i, j] / 6 + Rational(1, 2), 0),
     Heaviside(1 - hprebn[i, j], 0) * Heaviside(hprebn[i, j] + 3, 0)),
    ("simpler-step", "batchnorm",
     Heaviside(Min(6, hprebn[i, j] + 3) - 2, 0) * sign(Max(0, hprebn[i, j]) - 1),
     Heaviside(hprebn[i, j] + 1, 0) * sign(hprebn[i, j] - 1)),
    ("cases", "batchnorm",
     Heaviside(-hprebn[i, j], 1) * bnmeani[j] / 10 + Heaviside(hprebn[i, j], 0) * bnmeani[j],
     Piecewise((Rational(1, 10), hprebn[i, j] <= 0), (1, True)) * bnmeani[j]),
    ("cases", "batchnorm",
     Heaviside(Min(1, hprebn[i, j]) + 1, 0) * Heaviside(1 - hprebn[i, j], 1) * hprebn[i, j]
     + Heaviside(hprebn[i, j] - 1, 0) - Heaviside(-1 - hprebn[i, j], 1),
     Max(-1, Min(1, hprebn[i, j]))),
]

# Where a rule's side condition fails it leaves the expression alone: a clip that can flip the
# step's sign, a sum that cancels nothing, an odd function's argument that would grow.
UNCHANGED = [
    ("simpler-step", Heaviside(1 - Max(2, hprebn[i, j]), 0)),
    ("simpler-step", Heaviside(Min(0, hprebn[i, j]) - 1, 0) * Heaviside(Max(0, hprebn[i, j]), 0)),
    ("common-denominator", 1 / (1 + Abs(hprebn[i, j])) + hprebn[i, j] / (1 + Abs(hprebn[i, j])) ** 2),
    ("odd-sign", -tanh(hprebn[i, j])),
    ("sign-abs", hprebn[i, j] * sign(bndiff[i, j])),
    ("simpler-step", sign(Max(2, hprebn[i, j]) - 1)),
    ("cases", Heaviside(hprebn[i, j], 0)),  # already as cheap as a case split
    ("cases", Heaviside(hprebn[i, j] - bnmeani[j], 0) - Heaviside(bnmeani[j] - hprebn[i, j], 0)),
]


@pytest.fixture(scope="module")
def programs(root):
    result = {}
    for name in ("cross_entropy", "batchnorm", "layernorm"):
        program = load(root / "derivations" / f"{name}.py")
        sizes = tuple((s, SMALL[str(s)]) for s, _ in program.sizes)
        result[name] = dataclasses.replace(program, sizes=sizes)
    return result


def forward_values(program) -> dict:
    """Every forward value of ``program`` on seeded inputs, plus random upstream adjoints."""
    module = load_module(module_source(program, derive_backward(program), "numpy"), "values")
    inputs = example_inputs(program, torch.float64, seed=5)
    values = module.forward(*(x.numpy() for x in inputs.values()))
    rng = np.random.default_rng(5)
    for name in program.outputs:
        if not program.loss:
            values["d" + name] = rng.normal(size=np.shape(values[name]))
    return values


def numeric(expr, program, values):
    free = sorted({x for x in expr.atoms(sp.Idx)} - {lim[0] for s in expr.atoms(sp.Sum)
                                                       for lim in s.limits}, key=str)
    sizes = {s: v for s, v in program.sizes} | {s: v for s, v in program.constants}
    return tensor(expr, free, values, sizes)


def same_terms(a, b) -> bool:
    return collect(expand(a)) == collect(expand(b))


@pytest.mark.parametrize("rule_name, program_name, before, expected", EXAMPLES,
                         ids=[f"{e[0]}-{e[1]}" for e in EXAMPLES])
def test_rule_fires_on_its_example_and_is_sound(rule_name, program_name, before, expected,
                                               programs):
    program = programs[program_name]
    context = Context(program)
    rule = next(r for r in RULES if r.name == rule_name)
    terms = expand(before)
    after_terms = rule.apply(terms, context)
    assert after_terms != terms, f"{rule_name} did not fire"
    after = to_expr(after_terms)
    assert same_terms(after, expected), after
    values = forward_values(program)
    np.testing.assert_allclose(numeric(after, program, values),
                               numeric(before, program, values), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rule_name, program_name, before, expected", EXAMPLES,
                         ids=[f"{e[0]}-{e[1]}" for e in EXAMPLES])
def test_a_rule_leaves_sympy_exponents(rule_name, program_name, before, expected, programs):
    """Exponents stay SymPy numbers (``sign-abs`` once wrote a Python 1, which later rules
    could not ask ``is_number``: an internal error the double-backward fuzzer found)."""
    rule = next(r for r in RULES if r.name == rule_name)
    for term in rule.apply(expand(before), Context(programs[program_name])):
        assert all(isinstance(e, sp.Basic) for _, e in term.factors), term


@pytest.mark.parametrize("rule_name, before", UNCHANGED, ids=[e[0] for e in UNCHANGED])
def test_rule_leaves_alone_what_its_condition_excludes(rule_name, before, programs):
    rule = next(r for r in RULES if r.name == rule_name)
    terms = collect(expand(before))
    assert to_expr(rule.apply(terms, Context(programs["batchnorm"]))) == to_expr(terms)


def test_every_rule_has_an_example_and_a_docstring():
    assert {r.name for r in RULES} <= {e[0] for e in EXAMPLES}
    for rule in RULES:
        assert "->" in rule.doc, rule.name


def test_factor_pulls_out_what_all_terms_share(programs):
    context = Context(programs["batchnorm"])
    j2 = Idx("j", H)
    result = factor(collect(expand(dh[i, j2] - h[i, j2] ** 2 * dh[i, j2])), context)
    assert result == (1 - h[i, j2] ** 2) * dh[i, j2]


def test_derived_facts_come_from_the_program(programs):
    facts = Context(programs["batchnorm"]).definitions.facts
    assert [(f.name, f.indices) for f in facts if not f.terms] == [("bndiff", (i,))]
    ln_facts = Context(programs["layernorm"]).definitions.facts
    assert [(f.name, f.indices) for f in ln_facts if not f.terms] == [("xc", (jf,))]
    ce = Context(programs["cross_entropy"]).definitions
    assert [p.name for p in ce.monomials] == ["counts_sum_inv", "probs"]
    assert [p.name for p in ce.sums] == ["counts_sum"]


def test_a_mean_over_several_axes_gives_a_joint_fact_and_folds_jointly(root):
    """GroupNorm's ``mu[i, g] = Sum(x[i, g, h, l], h, l)/(Cg*L)`` makes ``Sum_{h, l} xc = 0``, a
    fact over two axes at once derived as the single-axis ones are; no single-axis fact holds."""
    program = load(root / "examples" / "layers" / "groupnorm.py")
    context = Context(program)
    i_, g_, h_, l_ = (program.body[1].lhs.indices)
    facts = [(f.name, f.indices) for f in context.definitions.facts if not f.terms]
    assert facts == [("xc", (h_, l_))]
    xg, mu_, xc_ = IndexedBase("x"), IndexedBase("mu"), IndexedBase("xc")
    fold_sum = next(r for r in RULES if r.name == "fold-sum")
    cg, L = (idx.upper + 1 for idx in (h_, l_))
    folded = to_expr(fold_sum.apply(expand(Sum(xg[i_, g_, h_, l_], h_, l_)), context))
    assert folded == cg * L * mu_[i_, g_]
    fact = next(r for r in RULES if r.name == "reduction-fact")
    assert fact.apply(expand(Sum(xc_[i_, g_, h_, l_], h_, l_) * xg[i_, g_, 0, 0]), context) == []
    # one axis alone is no fact, nor a product under the sum
    for kept in (Sum(xc_[i_, g_, h_, l_], h_), Sum(xc_[i_, g_, h_, l_] * xg[i_, g_, h_, l_], h_, l_)):
        terms = expand(kept)
        assert fact.apply(terms, context) == terms


def test_a_fact_is_not_applied_to_a_diagonal(programs):
    """``Sum_i bndiff[i, j] = 0`` says nothing of ``Sum_i bndiff[i, i]``: a match that binds the
    fact's other axis to the summed index is refused (and so is the same sum-fold)."""
    context = Context(programs["batchnorm"])
    for name in ("reduction-fact", "fold-sum"):
        rule = next(r for r in RULES if r.name == name)
        for expr in (Sum(bndiff[i, i], i), Sum(hprebn[i, i], i)):
            terms = expand(expr)
            assert rule.apply(terms, context) == terms, (name, expr)


def test_a_fractional_power_is_folded_only_over_a_non_negative_base():
    """``p = (x + 1)**(-1/2)``: ``1/(x + 1)`` is not ``p**2``, which is undefined where ``x < -1``;
    over ``q = (x**2 + 1)**(-1/2)``, established non-negative, ``1/(x**2 + 1) -> q**2`` and
    ``(x**2 + 1)**(-1/4) -> q**(1/2)``."""
    from symderive import Builder

    x, p_, q_, y = symbols("x p q y", cls=IndexedBase)
    b = Builder("powers", sizes={n: 3})
    b.input(x[i])
    b[p_[i]] = (x[i] + 1) ** Rational(-1, 2)
    b[q_[i]] = (x[i] ** 2 + 1) ** Rational(-1, 2)
    b[y[i]] = p_[i] + q_[i]
    b.output(y)
    context = Context(b.build())
    fold_power = next(r for r in RULES if r.name == "fold-power")
    terms = expand(1 / (x[i] + 1))
    assert fold_power.apply(terms, context) == terms
    assert to_expr(fold_power.apply(expand(1 / (x[i] ** 2 + 1)), context)) == q_[i] ** 2
    assert to_expr(fold_power.apply(expand((x[i] ** 2 + 1) ** Rational(-1, 4)), context)) \
        == sp.sqrt(q_[i])


def test_facts_skipped_only_where_a_summed_term_provably_stays(monkeypatch):
    """``reduce_for_fact`` skips the reduction fixpoint only where it would keep a summed term:
    on an elementwise program it answers as the fixpoint does, a fact where the terms cancel
    (``Sum_i ((x + 1)*(x - 1) - x*x) = -n``) and none where they cannot (``Sum_i (1 - t**2)``,
    where it skips). (A power of a sum is kept whole, ``expand``: its expansion would cancel in
    floating point, so a product of two sums is written here.)"""
    from symderive import Builder
    from symderive.algebra import reduction as rules
    from symderive.algebra.reduction import REDUCE_RULES, reduce_for_fact, run_to_fixpoint

    x, t, u, w = symbols("x t u w", cls=IndexedBase)
    b = Builder("elementwise", sizes={n: 3})
    b.input(x[i])
    b[t[i]] = tanh(x[i])
    b[u[i]] = (x[i] + 1) * (x[i] - 1) - x[i] * x[i]
    b[w[i]] = (1 - t[i] ** 2) * u[i]
    b.output(w)
    facts = Context(b.build()).definitions.facts
    assert [(f.name, f.indices, to_expr(list(f.terms))) for f in facts] == [("u", (i,), -n)]
    b = Builder("no_facts", sizes={n: 3})
    b.input(x[i])
    b[t[i]] = tanh(x[i])
    b.output(t)
    context = Context(b.build())
    assert not context.definitions.facts and not context.definitions.sums
    for rhs, skipped in (((x[i] + 1) * (x[i] - 1) - x[i] * x[i], False),
                         (1 - t[i] ** 2, True), ((1 - t[i] ** 2) * x[i] - x[i], True),
                         (x[i] * x[i] ** -1 - 1, False), (x[i] * t[i] - t[i] * x[i], False)):
        terms = expand(Sum(rhs, i))
        full = run_to_fixpoint(terms, context, REDUCE_RULES)
        ran = []
        monkeypatch.setattr(rules, "run_to_fixpoint", lambda *a: ran.append(1) or full)
        quick = reduce_for_fact(terms, context)
        monkeypatch.undo()
        assert all(not term.bound for term in quick) == all(not term.bound for term in full)
        assert (not ran) == skipped, rhs


def test_gather_merges_two_contractions_by_moving_a_row_constant_in(root):
    """Attention's dQ with dS inlined: ``Sum_s K*P*dP - (Sum_s K*P)*c`` with ``c`` a row sum is
    one contraction ``Sum_s K*P*(dP - c)`` (one matmul, not two), the same numbers; batchnorm's
    ``xhat[i, j]*Sum_k xhat*dy + Sum_k dy`` keeps both column sums (moved in, ``xhat[i, j]``
    would make an (i, k, j) contraction)."""
    attention = load(root / "examples" / "layers" / "attention.py")
    T, L, E = (sp.Symbol(x, integer=True, positive=True) for x in "TLE")
    t, s, s2, e = Idx("t", T), Idx("s", L), Idx("k", L), Idx("e", E)
    K, P, dP = symbols("K P dP", cls=IndexedBase)
    row = Sum(P[t, s2] * dP[t, s2], s2)
    expanded = Sum(K[s, e] * P[t, s] * dP[t, s], s) - Sum(K[s, e] * P[t, s], s) * row
    merged = gather(collect(expand(expanded)), Context(attention))
    assert isinstance(merged, Sum) and len(merged.limits) == 1, merged  # one sum over s
    sizes = {T: 3, L: 4, E: 2}
    generator = np.random.default_rng(0)
    arrays = {name: generator.normal(size=shape) for name, shape in
              (("K", (4, 2)), ("P", (3, 4)), ("dP", (3, 4)))}
    np.testing.assert_allclose(tensor(merged, [t, e], arrays, sizes),
                               tensor(expanded, [t, e], arrays, sizes), rtol=1e-12)

    xhat, dy = symbols("xhat dy", cls=IndexedBase)
    wide = xhat[i, j] * Sum(xhat[k, j] * dy[k, j], k) + Sum(dy[k, j], k)
    kept = gather(collect(expand(wide)), Context(load(root / "derivations" / "batchnorm.py")))
    assert len([a for a in sp.preorder_traversal(kept) if isinstance(a, Sum)]) == 2, kept


def simplify_expr(expr, context):
    return simplify(expr, context, shown=False)[0]


def test_a_re_expanded_contraction_reads_the_saved_name_back(root):
    """FlashAttention's row sum: with ``dP = dO V^T`` inlined, ``Sum_s P*dP`` is ``Sum_e O*dO``
    (``O = Sum_s P*V``, and ``P = ex/den`` with ``den`` constant in the sum), the same numbers
    for consistent forward values; without ``1/den`` the sum is not ``O``'s and stays."""
    attention = load(root / "examples" / "layers" / "attention.py")
    context = Context(attention)
    T, L, E = (sp.Symbol(x, integer=True, positive=True) for x in "TLE")
    t, s, e = Idx("t", T), Idx("s", L), Idx("e", E)
    P, V, dO, O, ex = symbols("P V dO O ex", cls=IndexedBase)
    row = Sum(P[t, s] * Sum(V[s, e] * dO[t, e], e), s)
    folded = simplify_expr(row, context)
    assert folded == Sum(O[t, e] * dO[t, e], (e, 0, E - 1)), folded
    generator = np.random.default_rng(1)
    weights = np.exp(generator.normal(size=(3, 4)))
    arrays = {"P": weights / weights.sum(1, keepdims=True), "V": generator.normal(size=(4, 2)),
              "dO": generator.normal(size=(3, 2))}
    arrays["O"] = arrays["P"] @ arrays["V"]
    sizes = {T: 3, L: 4, E: 2}
    np.testing.assert_allclose(tensor(folded, [t], arrays, sizes),
                               tensor(row, [t], arrays, sizes), rtol=1e-12)
    unscaled = simplify_expr(Sum(ex[t, s] * V[s, e] * dO[t, e], s, e), context)
    assert not unscaled.has(O), unscaled


def test_a_folded_definition_s_own_sum_never_captures_an_index_of_the_match():
    """``O[t, f] = Sum_s ex*V/Sum_u ex[t, u]`` keeps its denominator as one atom with a bound
    index of its own (``_a0`` once canonical): a term at a free index of that name whose
    denominator is the trace ``Sum_u ex[u, u]`` is not ``O`` (the red team's capture case)."""
    T, E = symbols("T E", integer=True, positive=True)
    t, s, u, f = Idx("t", T), Idx("s", T), Idx("u", T), Idx("f", E)
    ex, V, O = symbols("ex V O", cls=IndexedBase)
    builder = Builder("inline_den", sizes={T: 4, E: 3})
    builder.input(ex[t, s], uniform(0.5, 2.0))
    builder.input(V[s, f], normal(1.0))
    builder[O[t, f]] = Sum(ex[t, s] * V[s, f], s) / Sum(ex[t, u], u)
    builder.output(O)
    context = Context(builder.build())
    assert simplify_expr(Sum(ex[t, s] * V[s, f], s) / Sum(ex[t, u], u), context) == O[t, f]
    a0 = Idx("_a0", T)
    trace = Sum(ex[a0, s] * V[s, f], s) / Sum(ex[u, u], u)
    assert not simplify_expr(trace, context).has(O)
