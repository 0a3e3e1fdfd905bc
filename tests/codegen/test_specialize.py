"""Specialising rewrites: a written-out softmax (log-softmax) becomes one library call in the
Function's forward, its normaliser read back from the softmax's maximum, the softmax adjoints
ATen's backward kernels, and a loss's adjoint folded into the backward's small factors; each
refused without its side condition."""
import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, exp, symbols

from symderive import Builder, Maximum, normal
from symderive.algebra.simplify import derive_backward
from symderive.codegen.arrays import AddAt, Arange, ArrayRef, ArrayStatement
from symderive.codegen.emit import module_source
from symderive.codegen.extents import Extents
from symderive.codegen.fuse import fused
from symderive.codegen.lower import lower
from symderive.codegen.specialize import Softmax, seeded, softmax
from symderive.program.load import load
from symderive.verify.check import load_module

n, V = symbols("n V", integer=True, positive=True)
i, c = Idx("i", n), Idx("c", V)
x, y, m, e, s, r, p = symbols("x y m e s r p", cls=IndexedBase)


def softmax_program(shift, summed=None):
    """``p = exp(x - shift)/Sum(...)`` written out; ``summed`` replaces what the sum adds up."""
    b = Builder("p", sizes={n: 3, V: 4})
    b.input(x[i, c], normal(1.0))
    b.input(y[i, c], normal(1.0))
    b[m[i]] = shift
    b[e[i, c]] = exp(x[i, c] - m[i])
    b[s[i]] = Sum(summed if summed is not None else e[i, c], c)
    b[r[i]] = s[i] ** -1
    b[p[i, c]] = e[i, c] * r[i]
    b.output(p)
    return b.build()


def specialized_codes(program):
    code = fused(lower(program), (program,), update=False, backward=derive_backward(program))
    return {st.name: st.code for st in softmax(code, Extents((program,)))}


def test_a_max_shifted_softmax_is_one_call_and_its_normaliser_a_read_back():
    codes = specialized_codes(softmax_program(Maximum(x[i, c], c)))
    assert codes["p"] == Softmax(ArrayRef("x"), 1)
    assert type(codes["r"]).__name__ == "MaxValues" and codes["r"].args[0] == ArrayRef("p")


def test_a_shift_that_is_not_the_maximum_is_a_softmax_without_the_read_back():
    """Any row constant cancels in the quotient, but only the maximum makes exp exactly 1."""
    codes = specialized_codes(softmax_program(Sum(x[i, c], c) / V))
    assert codes["p"] == Softmax(ArrayRef("x"), 1)
    assert codes["r"] == ArrayRef("s") ** -1


def test_a_sum_of_something_else_is_not_a_softmax():
    codes = specialized_codes(softmax_program(Maximum(x[i, c], c), summed=exp(y[i, c])))
    assert not any(code.has(Softmax) for code in codes.values())


def emitted(root, name, target="torch"):
    program = load(root / "derivations" / f"{name}.py")
    return load_module(module_source(program, derive_backward(program), target), name)


def test_the_cross_entropy_function_runs_a_softmax_and_no_exp(root):
    program = load(root / "derivations" / "cross_entropy.py")
    source = module_source(program, derive_backward(program), "torch")
    lean = source.split("def lean_forward(")[1].split("\n\n\n")[0]
    assert "torch.softmax(logits, 1)" in lean and "log_softmax_at(probs, logits, Y)" in lean
    assert "torch.exp" not in lean and "norm_logits" not in lean
    assert ".amax(" not in lean  # the row maxima only where a label's probability underflows


def _label_log_softmax_cases():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(64, 40, generator=generator) * 4
    labels = torch.randint(0, 40, (64,), generator=generator)
    tiny = logits.clone()
    tiny[:3, 7] = -1e4  # the label's probability is 0 in float32 in three rows
    tiny_labels = labels.clone()
    tiny_labels[:3] = 7
    return [(logits, labels), (tiny, tiny_labels), (1000.0 * torch.sign(logits), labels)]


@pytest.mark.parametrize("compiling", [False, True])
def test_log_softmax_at_the_labels_equals_torch_where_probabilities_underflow_too(
        root, monkeypatch, compiling):
    """The emitted helper against ``F.log_softmax`` read at the labels, in float32: labels of
    ordinary probability, labels whose probability is 0 in float32 (the shifted form for those
    rows) and logits of +-1000; eagerly (the rows checked first) and as under torch.compile
    (the shifted form computed for every row, chosen where needed)."""
    module = emitted(root, "cross_entropy")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    for logits, labels in _label_log_softmax_cases():
        got = module.log_softmax_at(torch.softmax(logits, 1), logits, labels)
        want = F.log_softmax(logits.double(), 1)[torch.arange(len(labels)), labels]
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=2e-5)


def test_the_cross_entropy_function_under_vmap_takes_the_shifted_form_where_needed(root):
    """Under vmap no value may decide a branch: the helper computes both forms and chooses."""
    module = emitted(root, "cross_entropy")
    logits, labels = _label_log_softmax_cases()[1]
    batch = torch.stack([logits, logits.flip(0)])
    got = torch.func.vmap(lambda x: module.cross_entropy(x, labels))(batch)
    want = torch.stack([F.cross_entropy(x, labels) for x in batch])
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("case", ["normal", "1000", "-1e4"])
def test_the_cross_entropy_function_matches_torch(root, case):
    """Loss and gradient through the Function (lean forward, seeded backward) against
    F.cross_entropy, with an upstream of 3: finite where torch's are, at logits of +-1000 and
    with one class at -1e4 (its probability is 0 in float32; some labels read it)."""
    module = emitted(root, "cross_entropy")
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(32, 27, generator=generator)
    if case == "1000":
        logits = 1000.0 * torch.sign(logits)
    elif case == "-1e4":
        logits[:, 5] = -1e4
    labels = torch.randint(0, 27, (32,), generator=generator)
    labels[:4] = 5
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss, expected = module.cross_entropy(ours, labels), F.cross_entropy(theirs, labels)
    (3 * loss).backward()
    (3 * expected).backward()
    assert torch.isfinite(loss) and torch.isfinite(ours.grad).all()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize("target", ["torch", "numpy"])
@pytest.mark.parametrize("name", ["cross_entropy", "makemore_mlp"])
def test_the_seeded_backward_scales_every_gradient(root, name, target):
    from symderive.verify.check import example_inputs

    program = load(root / "derivations" / f"{name}.py")
    module = emitted(root, name, target)
    inputs = example_inputs(program, torch.float64, 0)
    if target == "numpy":
        inputs = {k: v.numpy() for k, v in inputs.items()}
    values = module.forward(**inputs)
    once, scaled = module.backward(values), module.backward(values, 2.5)
    assert once.keys() == scaled.keys()
    for key in once:
        np.testing.assert_allclose(np.asarray(scaled[key]), 2.5 * np.asarray(once[key]),
                                   rtol=1e-12, atol=1e-15)


def test_the_seed_goes_onto_the_terms_that_read_no_adjoint():
    seed, probs, Y = sp.Symbol("dloss"), ArrayRef("probs"), ArrayRef("Y")
    code = AddAt(probs / n, (Arange(n), Y), -1 / n)
    (found,) = seeded([ArrayStatement("dlogits", code)], ["logits", "probs"], seed)
    assert found.code == AddAt(probs * seed / n, (Arange(n), Y), -seed / n)
    later = ArrayStatement("dx", ArrayRef("dlogits") * ArrayRef("w") + ArrayRef("w"))
    assert seeded([ArrayStatement("dlogits", code), later], ["x", "logits"], seed)[1].code == \
        ArrayRef("dlogits") * ArrayRef("w") + seed * ArrayRef("w")


def test_code_not_linear_in_the_adjoints_is_not_seeded():
    square = ArrayStatement("dx", ArrayRef("dy") * ArrayRef("dy"))
    assert seeded([ArrayStatement("dy", ArrayRef("w")), square], ["x", "y"],
                  sp.Symbol("dloss")) is None


def test_log_softmax_at_is_only_the_read_of_one_label_per_row():
    """``u[arange(n), Y] - m + log(p.amax(1))`` becomes ``LogSoftmaxAt``; a column read at a
    fixed index, a shift that is not the row maximum, or a normaliser of another softmax is
    left as written."""
    from symderive.codegen.arrays import Take
    from symderive.codegen.fuse import MaxValues
    from symderive.codegen.specialize import LogSoftmaxAt, log_softmax_at

    Y = IndexedBase("Y")
    b = Builder("labels", sizes={n: 3, V: 4})
    b.input(x[i, c], normal(1.0))
    b.input(y[i, c], normal(1.0))
    b.labels(Y[i], V)
    b[p[i, c]] = x[i, c] * 2
    b.output(p)
    extents = Extents((b.build(),))
    u, rows = ArrayRef("x"), Arange(n)
    base = [ArrayStatement("p", Softmax(u, 1)), ArrayStatement("r", MaxValues(ArrayRef("p"), 1)),
            ArrayStatement("m", MaxValues(u, 1)), ArrayStatement("q", Softmax(ArrayRef("y"), 1)),
            ArrayStatement("s", MaxValues(ArrayRef("q"), 1)), ArrayStatement("k", ArrayRef("y"))]

    def loss(read, normaliser="r", shift="m"):
        code = read + sp.log(ArrayRef(normaliser)) - ArrayRef(shift)
        return log_softmax_at(base + [ArrayStatement("loss", code)], extents)[-1].code

    assert loss(Take(u, rows, ArrayRef("Y"))) == LogSoftmaxAt(ArrayRef("p"), u, ArrayRef("Y"))
    for kept in (loss(Take(u, rows, sp.Integer(2))), loss(Take(u, rows, ArrayRef("Y")), shift="k"),
                 loss(Take(u, rows, ArrayRef("Y")), normaliser="s")):
        assert not kept.has(LogSoftmaxAt), kept


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_a_traced_forward_keeps_the_shifted_form_for_inputs_that_need_it(root):
    """torch.jit.trace records the branch its example input takes: traced, the helper computes
    both forms and chooses per row, so an input whose label probability underflows still gets
    the finite loss (found by a red-team pass)."""
    module = emitted(root, "cross_entropy")
    generator = torch.Generator().manual_seed(3)
    example, labels = torch.randn(4, 5, generator=generator), torch.tensor([0, 1, 3, 2])
    traced = torch.jit.trace(lambda u, y: module.lean_forward(u, y)["loss"], (example, labels),
                             check_trace=False)
    hard = torch.randn(4, 5, generator=generator)
    hard[2, 3] = -1e4
    torch.testing.assert_close(traced(hard, labels), F.cross_entropy(hard, labels))


def _section(source: str, name: str) -> str:
    start = source.index(f"def {name}(")
    return source[start:source.index("\ndef ", start + 1)]


def test_softmax_adjoints_are_aten_kernels_in_torch_only(root):
    """Attention's ``dA = P*(dP - rowsum(P*dP))`` is one ``_softmax_backward_data`` call and
    log_softmax's ``dz = dy - exp(y)*sum(dy)`` one ``_log_softmax_backward_data`` call (its
    Function's forward ``torch.log_softmax``); NumPy keeps the written-out forms."""
    for name, kernel in (("attention", "torch._softmax_backward_data(dP, P, 1, dtype)"),
                         ("log_softmax", "torch._log_softmax_backward_data(dy, y, 1, dtype)")):
        program = load(root / "examples" / "layers" / f"{name}.py")
        backward = derive_backward(program)
        torch_source = module_source(program, backward, "torch")
        assert kernel in _section(torch_source, "backward")
        assert "_backward_data" not in module_source(program, backward, "numpy")
    assert "y = torch.log_softmax(z, 1)" in _section(torch_source, "lean_forward")


def test_a_softmax_adjoint_of_another_array_is_left_as_written():
    """``p*(g - (g*q).sum(1))`` with ``q`` not ``p``, and ``g - exp(y)*h.sum(1)`` with ``h`` not
    ``g``, are no kernel's expression: left as they are."""
    from symderive.codegen.arrays import NewAxes, SumAxes
    from symderive.codegen.specialize import softmax_adjoints

    b = Builder("adjoints", sizes={n: 3, V: 4})
    for name in ("g", "h", "pp", "q", "yy"):
        b.input(IndexedBase(name)[i, c], normal(1.0))
    b[IndexedBase("out")[i, c]] = IndexedBase("g")[i, c]
    b.output(IndexedBase("out"))
    program = b.build()
    g, h, pp, q, yy = (ArrayRef(name) for name in ("g", "h", "pp", "q", "yy"))
    back = lambda a: NewAxes(SumAxes(a, (1,), 2), (0, 1))  # noqa: E731
    statements = [ArrayStatement("a", pp * (g - back(g * q))),
                  ArrayStatement("b", g - exp(yy) * back(h)),
                  ArrayStatement("c", pp * (g - back(g * pp)))]
    found = softmax_adjoints(statements, Extents((program,)))
    assert [s.code for s in found[:2]] == [s.code for s in statements[:2]]
    assert type(found[2].code).__name__ == "SoftmaxAdjoint"


def test_an_overlapping_window_is_a_strided_view(root):
    """``x[i, c, 2*p + u]``, ``u`` in ``range(3)``: the forward reads ``x.unfold(2, 3, 2)`` (NumPy
    ``sliding_window_view``), no gathered copy."""
    program = load(root / "examples" / "layers" / "avg_pool_overlap.py")
    backward = derive_backward(program)
    assert "x.unfold(2, 3, 2).sum(3)" in _section(module_source(program, backward, "torch"),
                                                   "forward")
    assert "sliding_window_view(x, 3, axis=2)[:, :, ::2]" in module_source(program, backward,
                                                                             "numpy")
