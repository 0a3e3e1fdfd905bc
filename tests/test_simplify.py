"""The compact forms: cross-entropy, batchnorm (Bessel and biased) and layernorm, from the forward
program alone, through the same rules."""
import pytest
import sympy as sp
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, symbols

from symderive.derivation import derive_backward, load
from symderive.ops import ArgMax
from symderive.simplify import compact_gradients, derive_gradients

n, V, H, d = symbols("n V H d", integer=True, positive=True)


@pytest.fixture(scope="module")
def gradients(root):
    """Per derivation, each input's gradient and its ``derive --json`` summary, by name."""
    def by_name(file):
        program = load(root / "derivations" / file)
        return {g.name: (g, g.summary(program)) for g in derive_gradients(program)}
    return {f: by_name(f"{f}.py") for f in
            ("cross_entropy", "batchnorm", "batchnorm_biased", "layernorm", "makemore_mlp_layers")}


def sums_over(expr, size):
    return [s for s in sp.preorder_traversal(expr) if isinstance(s, sp.Sum)
            and all(limit[2] == size - 1 for limit in s.limits)]


def test_cross_entropy_is_probs_minus_onehot_over_n(gradients):
    g, summary = gradients["cross_entropy"]["logits"]
    i, c = Idx("i", n), Idx("c", V)
    probs, Y = IndexedBase("probs"), IndexedBase("Y")
    assert g.expr == (probs[i, c] - KroneckerDelta(c, Y[i])) / n
    assert summary["reductions"] == 0 and summary["ops"] <= 7
    assert not g.expr.has(ArgMax)  # the max-shift path vanished symbolically
    assert summary["uses"] == ["Y", "probs"]


def test_batchnorm_bessel_has_two_batch_reductions_and_reads_saved_values(gradients):
    g, summary = gradients["batchnorm"]["hprebn"]
    assert summary["reductions"] == 2 and len(sums_over(g.expr, n)) == 2
    assert set(summary["uses"]) == {"bnraw", "bnvar_inv", "bngain", "dhpreact"}
    assert summary["ops"] <= 29
    assert n in g.expr.free_symbols and g.expr.has(1 / (n - 1))  # n stays a symbol
    # the notebook's one-liner, written in SymPy, is the same expression
    i, j, k = Idx("i", n), Idx("j", H), Idx("k", n)
    gain, rstd, xhat, dy = symbols("bngain bnvar_inv bnraw dhpreact", cls=IndexedBase)
    notebook = gain[j] * rstd[j] * (dy[i, j] - Sum(dy[k, j], k) / n
                                    - xhat[i, j] * Sum(dy[k, j] * xhat[k, j], k) / (n - 1))
    assert sp.expand(g.expr - notebook) == 0
    assert str(gradients["batchnorm"]["bngain"][0].expr) == \
        "Sum(bnraw[i, j]*dhpreact[i, j], (i, 0, n - 1))"
    assert str(gradients["batchnorm"]["bnbias"][0].expr) == "Sum(dhpreact[i, j], (i, 0, n - 1))"


def test_batchnorm_biased_has_the_same_structure_without_bessel(gradients):
    g, summary = gradients["batchnorm_biased"]["hprebn"]
    assert summary["reductions"] == 2 and not g.expr.has(1 / (n - 1))
    assert set(summary["uses"]) == {"bnraw", "bnvar_inv", "bngain", "dhpreact"}


def test_layernorm_comes_out_compact_with_feature_reductions(gradients):
    g, summary = gradients["layernorm"]["x"]
    assert summary["reductions"] == 2 and len(sums_over(g.expr, d)) == 2
    assert set(summary["uses"]) == {"xhat", "rstd", "gamma", "dy"}


def test_steps_form_a_chain_from_the_chain_rule_to_the_result(gradients):
    for layer in gradients.values():
        for g, _ in layer.values():
            if g.steps:
                assert g.steps[-1].after == g.expr, g.name
            for previous, step in zip(g.steps, g.steps[1:]):
                assert step.before == previous.after, (g.name, step.rule)


def test_bn_derivation_steps_name_the_general_rules(gradients):
    rules = [step.rule for step in gradients["batchnorm"]["hprebn"][0].steps]
    for rule in ("inline", "distribute", "fold-power", "reduction-fact", "fold", "factor"):
        assert rule in rules


def test_layered_mlp_uses_the_compact_layer_forms(root):
    program = load(root / "derivations" / "makemore_mlp_layers.py")
    backward = derive_backward(program)
    rhs = {s.name: s.rhs for s in backward.body}
    assert not rhs["dlogits"].has(sp.Sum) and not rhs["dhprebn"].has(IndexedBase("bndiff"))
    assert len([s for s in sp.preorder_traversal(rhs["dhprebn"]) if isinstance(s, sp.Sum)]) == 2
    assert [name[1:] for name in backward.outputs] == [
        "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "hprebn", "embcat", "W1", "b1",
        "emb", "C"]


def test_b1_gradient_is_symbolically_zero_when_everything_is_inlined(makemore):
    """Batchnorm removes any per-column constant, so b1's gradient is 0, not rounding noise."""
    gradients = {g.name: g for g in compact_gradients(makemore)}
    assert set(gradients) == {"C", "W1", "b1", "bngain", "bnbias", "W2", "b2"}
    assert gradients["b1"].expr == 0
    assert not any(g.expr.has(ArgMax) for g in gradients.values())  # the max shift vanished
