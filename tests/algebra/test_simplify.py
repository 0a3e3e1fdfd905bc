"""The compact forms: cross-entropy, batchnorm (Bessel and biased) and layernorm, from the forward
program alone, through the same rules."""
import pytest
import sympy as sp
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, symbols

from symderive.algebra.simplify import (
    compact_backward,
    compact_gradients,
    derive_backward,
    derive_gradients,
)
from symderive.program.load import load
from symderive.program.ops import ArgMax

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
    over (i, c), and dC would scatter W1*dhprebn, so dhpreact and demb are materialised; and where
    an adjoint feeds two matmuls and naming it costs less (dlogits: dW2 and dh; dhprebn: dW1 and
    dembcat), as a person writes it."""
    gradients = {g.name: g for g in compact_gradients(makemore)}
    assert set(gradients) == {"C", "W1", "b1", "bngain", "bnbias", "W2", "b2", "hpreact", "emb",
                              "logits", "hprebn"}
    assert gradients["logits"].choice.consumers == ("h", "W2")
    assert gradients["hprebn"].choice.consumers == ("embcat", "W1")
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
    from symderive.algebra.simplify import compact_backward
    from symderive.api import emit

    program = gated_mlp()
    backward, _ = compact_backward(program)
    assert [name[1:] for name in backward.outputs] == ["U", "a", "b", "V", "x", "W"]
    source = emit(program, target).source
    assert all(width <= 2 for width in einsum_widths(source)), source
    body = source[source.index("def backward"):]
    assert "einsum" not in body  # every contraction here fits a matmul
    assert "t0 = dout @ U.T" in body and body.count("dout @ U.T") == 1  # computed once
    # the hand-written silu is recognised as b*sigmoid(b), which can change the order of terms
    # (torch adds the second product by addmm, with no temporary for it)
    sums = ["dx = da @ W.T + db @ V.T", "dx = db @ V.T + da @ W.T"] if target == "numpy" else \
        ["dx = torch.addmm(da @ W.T, db, V.T)", "dx = torch.addmm(db @ V.T, da, W.T)"]
    assert "dW = x.T @ da" in body and any(form in body for form in sums), body


def test_gated_mlp_backward_passes_check():
    from symderive.verify.check import run_check

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
    from symderive.algebra.reduction import Context
    from symderive.algebra.materialise import contraction_width

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
    gradients = {g.name: g for g in compact_gradients(layer.build())}
    assert set(gradients) == {"x", "A", "B", "z"}
    assert gradients["z"].choice.consumers == ("x", "A", "B")


def _elementwise(name, rhs, constants=None):
    """A one-statement layer ``y[i, j] = rhs(x[i, j])``, its input gradient derived."""
    from symderive import Builder, normal

    i, j = Idx("i", n), Idx("j", d)
    x, y = IndexedBase("x"), IndexedBase("y")
    b = Builder(name, sizes={n: 4, d: 3}, constants=constants or {})
    b.input(x[i, j], normal(1.0))
    b[y[i, j]] = rhs(x[i, j])
    b.output(y)
    program = b.build()
    (g,) = derive_gradients(program)
    return program, g, x[i, j]


def test_an_elementwise_chain_is_factored_not_distributed():
    """The tanh-approximated GELU: the chain rule's products are gathered back (one ``1 - t**2``,
    ``x*(1 + 3*c*x**2)``) to fewer ops than the textbook form; a float literal stays a float."""
    from sympy import pi, sqrt, tanh

    c = symbols("c")
    _, g, x = _elementwise("gelu_tanh", lambda x: x * (1 + tanh(sqrt(2 / pi) * (x + c * x**3))) / 2,
                           {c: 0.044715})
    t = tanh(sqrt(2 / pi) * (x + c * x**3))
    textbook = ((1 + t) / 2 + x * (1 - t**2) * sqrt(2 / pi) * (1 + 3 * c * x**2) / 2) \
        * IndexedBase("dy")[x.indices]
    assert sp.count_ops(g.expr) <= sp.count_ops(textbook) < 60
    assert sp.expand(g.expr - textbook) == 0
    assert g.expr.count(tanh) == 2 and "gather" in [s.rule for s in g.steps]
    _, g, x = _elementwise("gelu_float", lambda x: 0.5 * x * (1 + tanh(
        0.7978845608028654 * (x + 0.044715 * x**3))))
    numbers = [a for a in g.expr.atoms(sp.Number) if not a.is_Integer]
    assert numbers and all(a.is_Float for a in numbers), g.expr  # no 3602879.../7205759...
    assert sp.count_ops(g.expr) < 40


def test_output_rules_give_the_textbook_forms_of_softsign_and_clipped_steps():
    from sympy import Abs, Max, Min

    from symderive.program.ops import Piecewise

    _, g, x = _elementwise("softsign", lambda x: x / (1 + Abs(x)))
    dy = IndexedBase("dy")[x.indices]
    assert g.expr == dy / (Abs(x) + 1) ** 2
    _, g, x = _elementwise("hardsigmoid", lambda x: Min(1, Max(0, x / 6 + sp.Rational(1, 2))))
    assert g.expr == Piecewise((0, x <= -3), (dy / 6, x <= 3), (0, True))  # via the cases rule
    assert "cases" in [s.rule for s in g.steps]


def test_contractions_sharing_an_operand_are_merged():
    """``Sum_i dy[i]*M[i, k] + Sum_i dy[i]*N[i, k] -> Sum_i (M[i, k] + N[i, k])*dy[i]``: one
    contraction, and the check still passes."""
    from symderive import Builder
    from symderive.verify.check import run_check

    i, k = Idx("i", n), Idx("k", d)
    M, N, v, y, dy = symbols("M N v y dy", cls=IndexedBase)
    b = Builder("twomat", sizes={n: 5, d: 4})
    b.input(M[i, k])
    b.input(N[i, k])
    b.input(v[k])
    b[y[i]] = Sum(M[i, k] * v[k], k) + Sum(N[i, k] * v[k], k)
    b.output(y)
    program = b.build()
    (dv,) = [g for g in derive_gradients(program) if g.name == "v"]
    (s,) = [s for s in sp.preorder_traversal(dv.expr) if isinstance(s, sp.Sum)]
    assert dv.expr == s and sp.expand(s.function - (M[s.limits[0][0], k] + N[s.limits[0][0], k])
                                      * dy[s.limits[0][0]]) == 0
    assert run_check(program, "float64").ok


def test_a_long_elementwise_chain_materialises_rather_than_distributing():
    """Inlining the adjoint of tanh after tanh doubles its distributed terms per statement (the
    product of the 1 - y**2 factors); past ``INLINE_TERMS`` the adjoint is materialised, as a hand
    writer keeps ``dh``, so a long chain derives in time linear in its length."""
    from symderive import Builder
    from symderive.algebra.materialise import INLINE_TERMS
    from symderive.algebra.simplify import compact_backward
    from symderive.algebra.terms import expanded_size

    m = symbols("m", integer=True, positive=True)
    i = Idx("i", m)
    chain = Builder("chain", sizes={m: 4})
    previous = IndexedBase("x")
    chain.input(previous[i])
    for position in range(1, 13):
        chain[IndexedBase(f"y{position}")[i]] = sp.tanh(previous[i])
        previous = IndexedBase(f"y{position}")
    chain.output(previous)
    program = chain.build()
    backward, gradients = compact_backward(program)
    kept = [g.name for g in gradients]
    assert kept[-1] == "x" and 2 <= len(kept) <= 6  # a few adjoints, not one per statement
    assert all(expanded_size(g.expr) <= 2 * INLINE_TERMS for g in gradients)
    # the materialised chain is still the chain rule: dx = dy12 * prod(1 - y_l**2) (y_0 = x)
    values = {IndexedBase("x")[i]: sp.Rational(1, 3)}
    for position in range(1, 13):
        values[IndexedBase(f"y{position}")[i]] = sp.tanh(values[
            IndexedBase("x")[i] if position == 1 else IndexedBase(f"y{position - 1}")[i]])
    adjoint = {"y12": sp.Integer(1)}
    for g in gradients:  # gradients come last statement first, each reading the one before
        adjoint[g.name] = g.expr.xreplace({IndexedBase(f"d{name}")[i]: value
                                           for name, value in adjoint.items()}).xreplace(values)
    expected = sp.Mul(*[1 - values[IndexedBase(f"y{p}")[i]] ** 2 for p in range(1, 13)])
    assert abs(float(adjoint["x"] - expected)) < 1e-12


@pytest.mark.parametrize("name", ["batchnorm", "cross_entropy"])
def test_the_backward_without_inline_steps_is_the_same_program(root, name):
    """derive_backward and the double backward skip the chain-rule display step, and give only
    the result readable index names (not the forms of every step, which nobody sees); the
    program and every expression are those of the shown derivation."""
    program = load(root / "derivations" / f"{name}.py")
    shown, gradients = compact_backward(program)
    quiet, quiet_gradients = compact_backward(program, inline_steps=False)
    assert quiet.body == shown.body
    assert [g.expr for g in gradients] == [q.expr for q in quiet_gradients]


def test_the_cycle_collector_is_paused_for_a_derivation_and_restored_after():
    """A derivation runs with Python's cycle collector paused (its full passes grow with the
    heap); afterwards it is as it was, enabled or not, also when the block raises."""
    import gc

    from symderive.algebra.simplify import cycle_collection_paused

    assert gc.isenabled()
    with cycle_collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), cycle_collection_paused():
        raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with cycle_collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
