"""The reverse pass: derivatives with deltas, contraction, fan-out, zeros, and the makemore chain."""
import sympy as sp
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, symbols, tanh

from symderive import Builder
from symderive.algebra.grad import backward, partial
from symderive.program.ops import ArgMax

n, d = symbols("n d", integer=True, positive=True)
i, j, k = Idx("i", n), Idx("j", d), Idx("k", n)
x, w, y, h = symbols("x w y h", cls=IndexedBase)

NOTEBOOK_ORDER = ["logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits",
                  "logit_maxes", "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw",
                  "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn", "embcat", "W1",
                  "b1", "emb", "C"]


def rhs(program, name, accumulate=False):
    return next(s.rhs for s in program.body if s.name == name and s.accumulate == accumulate)


def test_partial_of_an_array_read_is_a_delta():
    assert partial(x[i], "x", (k,)) == KroneckerDelta(i, k)
    assert partial(w[i], "x", (k,)) == 0


def test_partial_uses_the_op_output_where_the_rule_does():
    assert partial(tanh(x[i]), "x", (k,), h[i]) == (1 - h[i] ** 2) * KroneckerDelta(i, k)


def test_makemore_adjoints_come_in_the_notebook_order(makemore):
    assert [name[1:] for name in backward(makemore).outputs] == NOTEBOOK_ORDER


def test_makemore_atomic_chain_matches_the_notebook(makemore):
    b = backward(makemore)
    n, V = symbols("n V", integer=True, positive=True)
    i, c = Idx("i", n), Idx("c", V)
    Yb, probs, dlogprobs = IndexedBase("Yb"), IndexedBase("probs"), IndexedBase("dlogprobs")
    assert rhs(b, "dlogprobs") == -KroneckerDelta(c, Yb[i]) / n
    assert rhs(b, "dprobs") == dlogprobs[i, c] / probs[i, c]
    assert "n - 1" in str(rhs(b, "dbndiff2"))  # Bessel's correction stays symbolic
    # fan-out: the second consumer accumulates
    for name in ("dcounts", "dlogits", "dbndiff", "dhprebn"):
        assert [s.accumulate for s in b.body if s.name == name] == [False, True], name
    # the max routes its adjoint to the argmax, the gather's adjoint is a scatter over (i, t)
    assert rhs(b, "dlogits", accumulate=True).has(ArgMax)
    dC = rhs(b, "dC")
    assert isinstance(dC, sp.Sum) and dC.function.has(KroneckerDelta)
    assert len(b.body) == 30


def test_labels_and_unused_inputs_get_no_adjoint():
    b = Builder("unused", sizes={n: 3, d: 2})
    b.input(x[i, j])
    b.input(w[i, j])
    b[y[i]] = Sum(x[i, j] ** 2, j)
    b.output(y)
    grads = backward(b.build())
    assert grads.outputs == ("dx",)
    assert [s.rhs for s in grads.body] == [2 * IndexedBase("dy")[i] * x[i, j]]


def test_symbolic_zero_contributions_are_skipped():
    b = Builder("zero", sizes={n: 3, d: 2})
    b.input(x[i, j])
    b.input(w[i, j])
    b[y[i, j]] = x[i, j] + w[i, j] * 0 + Sum(KroneckerDelta(k, i) * x[k, j], k)
    b.output(y)
    grads = backward(b.build())
    assert [s.name for s in grads.body] == ["dx"]
    assert grads.body[0].rhs == 2 * IndexedBase("dy")[i, j]


def test_the_names_an_expression_reads_are_those_of_its_atoms():
    """``_reads`` asks a remembered per-subtree set of names; it is the names of the array reads
    (labels inside indices included) and symbols ``atoms`` finds."""
    from symderive.algebra.grad import _names_in, _reads

    n = symbols("n", integer=True, positive=True)
    i, k = Idx("i", n), Idx("k", n)
    x, y, Y = IndexedBase("x"), IndexedBase("y"), IndexedBase("Y")
    s = symbols("s")
    expr = Sum(tanh(x[i, Y[k]]) * KroneckerDelta(i, k), k) + s * y[i]
    expected = {str(a.base.label) for a in expr.atoms(sp.Indexed)} | \
        {a.name for a in expr.atoms(sp.Symbol)}
    assert _names_in(expr) == expected
    assert _reads(expr, "Y") and _reads(expr, "s") and not _reads(expr, "z")
