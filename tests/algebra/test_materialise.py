"""What the compact backward materialises when nobody says (no ``adjoints=``): the adjoints a
person writing the backward keeps named, chosen by the cost of the backward, on the layers of
examples/layers/. No rule mentions a layer; these tests read the choice off the result."""
import pytest
import sympy as sp

from symderive.algebra.cost import large_sizes, work
from symderive.algebra.materialise import contraction_width
from symderive.algebra.reduction import Context
from symderive.algebra.simplify import compact_backward, derive_backward
from symderive.codegen.cost_model import Costs
from symderive.codegen.lower import lower
from symderive.program.load import load
from symderive.verify.check import run_check

NEW_LAYERS = ["gru", "lstm", "mlp_ce", "attention", "causal_attention", "log_softmax",
              "logsumexp", "rmsnorm", "avg_pool", "max_pool", "avg_pool_overlap",
              "max_pool_overlap", "conv2d", "conv1d_strided"]


def layer(root, name):
    return load(root / "examples" / "layers" / f"{name}.py")


def by_name(program):
    return {g.name: g for g in compact_backward(program)[1]}


def test_gru_materialises_its_gate_adjoints_and_every_gradient_is_one_contraction(root):
    """The textbook GRU backward: the pre-activation adjoints named, each weight's gradient one
    matmul of them, dx and dh a sum of one matmul per gate."""
    program = layer(root, "gru")
    gradients = by_name(program)
    for gate, consumers in (("an", ("x", "Wn", "c")), ("ar", ("x", "hp", "Wr", "Ur")),
                            ("az", ("x", "hp", "Wz", "Uz"))):
        assert gate in gradients and gradients[gate].choice is not None
        assert set(gradients[gate].choice.consumers) >= set(consumers) - {"c"}
        assert gradients[gate].choice.named < gradients[gate].choice.inlined
    context = Context(program)
    for name in ("Wr", "Wz", "Wn", "Ur", "Uz", "Un"):
        expr = gradients[name].expr
        assert isinstance(expr, sp.Sum) and contraction_width(expr, context) == 2, expr
    assert all(contraction_width(g.expr, context) <= 2 for g in gradients.values())
    assert len(gradients["x"].expr.args) == 3  # one matmul per gate


def test_the_gru_backward_costs_what_the_textbook_backward_costs(root):
    """The cost model of the lowered backward: 12*D*H*n + 12*H**2*n multiply-adds in matmuls
    (two per gate and weight, as the textbook), and its elementwise work linear in H*n."""
    program = layer(root, "gru")
    backward = derive_backward(program)
    costs = Costs((backward, program)).statements(lower(backward, program))
    flops = sp.expand(sum((c.flops for c in costs.values()), sp.S.Zero))
    n, D, H = sp.symbols("n D H", integer=True, positive=True)
    polynomial = sp.Poly(flops, n, D, H)
    assert polynomial.coeff_monomial(n * D * H) == 12
    assert polynomial.coeff_monomial(n * H**2) == 12
    assert polynomial.coeff_monomial(n * H) <= 40


def test_attention_materialises_the_score_adjoint_and_reads_each_gradient_through_it(root):
    """dP = dO V^T and dA = P*(dP - rowsum(P*dP)) named; dQ, dK one contraction of dA each."""
    gradients = by_name(layer(root, "attention"))
    assert set(gradients) == {"Q", "K", "V", "P", "A"}
    dA = gradients["A"].expr
    assert dA.has(sp.IndexedBase("dP")) and dA.has(sp.Sum)
    for name in ("Q", "K"):
        reads = {str(x.base) for x in gradients[name].expr.atoms(sp.Indexed)}
        assert reads == {"dA", "K" if name == "Q" else "Q"}


def test_causal_attention_with_its_mask_from_the_indices_has_the_same_textbook_backward(root):
    """The scores masked by Heaviside(t - s, 1) feed the max and the exp, which is read back as
    the saved ex, so the max shift cancels as without the mask and dA = P*(dP - rowsum(P*dP)),
    the mask inside the saved P."""
    gradients = by_name(layer(root, "causal_attention"))
    dA = gradients["A"].expr
    assert not dA.has(sp.Heaviside) and not dA.has(sp.exp)
    assert {str(x.base) for x in dA.atoms(sp.Indexed)} == {"P", "dP"}
    for name in ("Q", "K"):
        assert {str(x.base) for x in gradients[name].expr.atoms(sp.Indexed)} == \
            {"dA", "K" if name == "Q" else "Q"}


def test_log_softmax_reads_the_softmax_back_from_its_output(root):
    """y = z - m - log(s) gives exp(y) == exp(z - m)/s, a fold like any saved product's: the
    textbook dz = dy - softmax(z)*sum(dy), softmax being exp(y)."""
    (gradient,) = by_name(layer(root, "log_softmax")).values()
    y = sp.IndexedBase("y")
    assert {str(x.base) for x in gradient.expr.atoms(sp.Indexed)} == {"y", "dy"}
    assert gradient.expr.has(sp.exp(y[gradient.lhs.indices]))
    assert any(step.rule == "fold" for step in gradient.steps)


def test_mlp_materialises_dlogits_and_dpre(root):
    """dlogits is the included loss's boundary (an include names its inputs' adjoints); dpre
    is named because, inlined, dx would contract W1, W2 and dlogits at once (the width rule)."""
    program = layer(root, "mlp_ce")
    gradients = by_name(program)
    assert program.adjoints == ("logits",)
    assert not gradients["logits"].expr.has(sp.Sum)  # (softmax - onehot)/n
    assert gradients["pre"].choice.rule == "width"
    assert "x" in gradients["pre"].choice.consumers


def test_a_layer_with_no_contractions_materialises_nothing(root):
    """batchnorm and layernorm keep their compact forms: nothing feeds two contractions."""
    for path in ("derivations/batchnorm.py", "derivations/layernorm.py"):
        program = load(root / path)
        assert {g.name for g in compact_backward(program)[1]} == \
            {x.name for x in program.inputs}


def test_work_counts_a_contraction_as_its_matmul():
    from sympy import Idx, IndexedBase, Sum, symbols

    n, d, h = symbols("n d h", integer=True, positive=True)
    i, k, j = Idx("i", n), Idx("k", d), Idx("j", h)
    x, y, a = IndexedBase("x"), IndexedBase("y"), IndexedBase("a")
    sizes = {n: 7, d: 3, h: 5}
    assert work(Sum(x[i, k] * y[i, j], i), sizes) == 2 * 7 * 3 * 5
    # the elementwise factors over (i, j) multiply first, once, then the contraction
    assert work(Sum(x[i, k] * y[i, j] * a[i, j], i), sizes) == 7 * 5 + 2 * 7 * 3 * 5


def test_the_large_profile_scales_every_size_together(root):
    program = layer(root, "gru")
    sizes = large_sizes(program)
    example = dict(program.sizes)
    ratios = {symbol: sizes[symbol] / example[symbol] for symbol in example}
    assert max(ratios.values()) / min(ratios.values()) < 1.5 and min(ratios.values()) > 10


@pytest.mark.parametrize("name", NEW_LAYERS)
def test_the_layer_passes_its_check_in_float64(root, name):
    """Both targets, the Function, finite differences and the layer's own torch reference."""
    report = run_check(layer(root, name), "float64", seed=3)
    assert report.ok, report.table()
    assert len({row.reference for row in report.rows}) >= 3
