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
    """Batchnorm removes any per-column constant, so b1's gradient is 0, not rounding noise.
    Inlining stops where it would contract three arrays at once: dbngain would sum W2*bnraw*probs
    over (i, c), and dC would scatter W1*dhprebn, so dhpreact and demb are materialised."""
    gradients = {g.name: g for g in compact_gradients(makemore)}
    assert set(gradients) == {"C", "W1", "b1", "bngain", "bnbias", "W2", "b2", "hpreact", "emb"}
    assert gradients["b1"].expr == 0
    assert not any(g.expr.has(ArgMax) for g in gradients.values())  # the max shift vanished


def gated_mlp(**options):
    """A gated MLP block written as a person writes it (silu(b) = b/(1 + exp(-b))), no adjoints=."""
    from sympy import exp

    from symderive import Builder, normal

    D, Hd, O = symbols("D Hd O", integer=True, positive=True)
    i, dd, h, o = Idx("i", n), Idx("d", D), Idx("h", Hd), Idx("o", O)
    x, W, Vw, U, a, b, out = symbols("x W V U a b out", cls=IndexedBase)
    layer = Builder("gated_mlp", sizes={n: 6, D: 4, Hd: 5, O: 3}, **options)
    layer.input(x[i, dd], normal(1.0))
    layer.input(W[dd, h], normal(0.5))
    layer.input(Vw[dd, h], normal(0.5))
    layer.input(U[h, o], normal(0.5))
    layer[a[i, h]] = Sum(x[i, dd] * W[dd, h], dd)
    layer[b[i, h]] = Sum(x[i, dd] * Vw[dd, h], dd)
    layer[out[i, o]] = Sum(a[i, h] * b[i, h] / (1 + exp(-b[i, h])) * U[h, o], h)
    layer.output(out)
    return layer.build()


def einsum_widths(source):
    """The number of arrays each einsum call in emitted source contracts."""
    import ast

    return [len(node.args) - 1 for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "einsum"]


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_gated_mlp_backward_contracts_at_most_two_arrays_at_a_time(target):
    """Inlining the adjoints of a and b would put x, dout, U and silu(b) under one sum (an einsum
    over 4 to 7 arrays); they are materialised instead, as a hand writer does, with no adjoints=."""
    from symderive.api import emit
    from symderive.simplify import compact_backward

    program = gated_mlp()
    backward, _ = compact_backward(program)
    assert [name[1:] for name in backward.outputs] == ["U", "a", "b", "V", "x", "W"]
    source = emit(program, target).source
    assert all(width <= 2 for width in einsum_widths(source)), source
    body = source[source.index("def backward"):]
    assert "einsum" not in body  # every contraction here fits a matmul
    assert "t0 = dout @ U.T" in body and body.count("dout @ U.T") == 1  # computed once
    assert "dW = x.T @ da" in body and "dx = da @ W.T + db @ V.T" in body


def test_gated_mlp_backward_passes_check():
    from symderive.check import run_check

    report = run_check(gated_mlp(), "float64")
    assert report.ok, report.table()


def test_adjoints_stay_an_override_of_automatic_materialisation():
    """Names listed in adjoints= are materialised whatever the rule says; the rule adds only the
    names whose inlining would multiply work."""
    listed = [g.name for g in compact_gradients(gated_mlp(adjoints=("a",)))]
    assert set(listed) == {"U", "a", "b", "V", "x", "W"}
    auto = {g.name: g.expr for g in compact_gradients(gated_mlp())}
    assert auto == {g.name: g.expr for g in compact_gradients(gated_mlp(adjoints=("a", "b")))}


def test_a_three_array_contraction_in_an_inlined_adjoint_materialises_it():
    """Two chained matmuls: inlined, dW1 = Sum_{i,o} x*dz*W2 contracts three arrays; reading dy
    by name, dW1 = x.T @ dy contracts two, so y's adjoint is materialised."""
    from symderive import Builder
    from symderive.rules import Context
    from symderive.simplify import contraction_width

    D, Hd, O = symbols("D Hd O", integer=True, positive=True)
    i, dd, h, o = Idx("i", n), Idx("d", D), Idx("h", Hd), Idx("o", O)
    x, W1, W2, y, z = symbols("x W1 W2 y z", cls=IndexedBase)
    layer = Builder("two_linear", sizes={n: 4, D: 3, Hd: 5, O: 2})
    layer.input(x[i, dd])
    layer.input(W1[dd, h])
    layer.input(W2[h, o])
    layer[y[i, h]] = Sum(x[i, dd] * W1[dd, h], dd)
    layer[z[i, o]] = Sum(y[i, h] * W2[h, o], h)
    layer.output(z)
    program = layer.build()
    context = Context(program)
    dz = IndexedBase("dz")
    assert contraction_width(Sum(x[i, dd] * dz[i, o] * W2[h, o], i, o), context) == 3
    assert contraction_width(Sum(x[i, dd] * dz[i, o] * x[i, dd], i), context) == 2  # one operand
    gradients = {g.name: g.expr for g in compact_gradients(program)}
    assert set(gradients) == {"W2", "y", "x", "W1"}
    assert str(gradients["W1"]) == "Sum(dy[i, h]*x[i, d], (i, 0, n - 1))"
    assert str(gradients["y"]) == "Sum(W2[h, o]*dz[i, o], (o, 0, O - 1))"


def test_a_contraction_the_forward_itself_has_is_not_a_reason_to_materialise():
    """z = Sum_{h, e} x[i, h]*A[h, e]*B[e, o] contracts three arrays in the forward: reading dz by
    name does not shrink its contributions, so nothing is materialised on its account."""
    from symderive import Builder

    D, E, O = symbols("D E O", integer=True, positive=True)
    i, dd, e, o = Idx("i", n), Idx("d", D), Idx("e", E), Idx("o", O)
    x, A, B, z, w = symbols("x A B z w", cls=IndexedBase)
    layer = Builder("chain", sizes={n: 4, D: 3, E: 2, O: 2})
    layer.input(x[i, dd])
    layer.input(A[dd, e])
    layer.input(B[e, o])
    layer[z[i, o]] = Sum(x[i, dd] * A[dd, e] * B[e, o], dd, e)
    layer[w[i, o]] = z[i, o] ** 2
    layer.output(w)
    assert {g.name for g in compact_gradients(layer.build())} == {"x", "A", "B"}
