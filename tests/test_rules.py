"""Every named rule fires on its documented example and is sound: before and after agree
numerically on forward values computed by the program itself (facts like ``Sum_i bndiff = 0`` only
hold there), evaluated by the naive loop oracle."""
import dataclasses

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import Idx, IndexedBase, KroneckerDelta, Rational, Sum, symbols

from symderive.check import example_inputs, load_module
from symderive.derivation import derive_backward, load
from symderive.emit import module_source
from symderive.rules import RULES, Context, factor
from symderive.terms import collect, expand, to_expr

from .interpret import tensor

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
    ("fold-sum", "cross_entropy", Sum(counts[i, c], c), counts_sum[i]),
    ("fold-sum", "batchnorm", Sum(hprebn[i, j], i), n * bnmeani[j]),
    ("reduction-fact", "batchnorm", Sum(bndiff[i, j], i), sp.S.Zero),
    ("reduction-fact", "layernorm", Sum(xc[i, jf], jf), sp.S.Zero),
    ("fold", "cross_entropy", counts[i, c] / counts_sum[i], probs[i, c]),
    ("fold", "batchnorm", bnvar_inv[j] ** 3 * bndiff[i, j] * Sum(bndiff[k, j] * dhpreact[k, j], k),
     bnvar_inv[j] * bnraw[i, j] * Sum(bnraw[k, j] * dhpreact[k, j], k)),
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
    assert [(f.name, str(f.index)) for f in facts if not f.terms] == [("bndiff", "i")]
    ln_facts = Context(programs["layernorm"]).definitions.facts
    assert [(f.name, str(f.index)) for f in ln_facts if not f.terms] == [("xc", "j")]
    ce = Context(programs["cross_entropy"]).definitions
    assert [p.name for p in ce.monomials] == ["counts_sum_inv", "probs"]
    assert [p.name for p in ce.sums] == ["counts_sum"]
