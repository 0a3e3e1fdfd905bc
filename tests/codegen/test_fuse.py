"""Fusion: small factors meet each other before a full-size array, and a sum of full-size terms is
computed in one fresh array updated in place; the fused code computes the same values."""
import numpy as np
import sympy as sp
import torch

from symderive.algebra.simplify import derive_backward
from symderive.codegen.arrays import ArrayRef, ArrayStatement, MatMul, NewAxes
from symderive.codegen.emit import module_source, reuse_earlier
from symderive.codegen.extents import Extents
from symderive.codegen.fuse import Grouped, InPlace, folded, fused
from symderive.codegen.lower import lower
from symderive.codegen.printing import PRINTERS
from symderive.program.load import load
from symderive.verify.check import load_module


def batchnorm_backward(root, target):
    program = load(root / "derivations" / "batchnorm.py")
    backward = derive_backward(program)
    statements = fused(reuse_earlier(lower(backward)), (backward, program),
                       distribute=target == "torch")
    printer = PRINTERS[target]()
    return {s.name: (s, printer.statement(s.name, s.code, s.accumulate)) for s in statements}


def test_extents_follow_broadcasting(root):
    program = load(root / "derivations" / "layernorm.py")
    extents = Extents((program,))
    x, mu, gamma = ArrayRef("x"), ArrayRef("mu"), ArrayRef("gamma")
    n, d = program.shape("x")
    assert extents(x) == (n, d)
    assert extents(NewAxes(mu, sp.Tuple(0, 1))) == (n, 1)
    assert extents(x * gamma + NewAxes(mu, sp.Tuple(0, 1))) == (n, d)
    assert extents(gamma / d) == (d,)


def test_small_factors_are_grouped_before_the_full_size_array(root):
    program = load(root / "derivations" / "batchnorm.py")
    extents = Extents((program,))
    n = program.shape("hprebn")[0]
    bnraw, bngain, bnvar_inv = ArrayRef("bnraw"), ArrayRef("bngain"), ArrayRef("bnvar_inv")
    code = folded(-bnraw * bngain * bnvar_inv / (n - 1), extents)
    assert code == bnraw * Grouped(bngain * bnvar_inv * Grouped(-1 / (n - 1)))
    # (Python's / raises on plain numbers: the division of sizes that can be 0 is quotient's)
    assert PRINTERS["torch"]().doprint(code) == "bnraw*(bngain*bnvar_inv*quotient(-1, n - 1))"
    assert folded(bngain * bnraw, extents) == bngain * bnraw  # one small factor: nothing to do
    assert folded(-bnraw, extents) == -bnraw


def test_batchnorm_backward_makes_two_full_size_writes_in_torch(root):
    """torch: the row factor ``bngain*bnvar_inv`` is named once and distributed over the terms,
    so ``addcmul`` starts from the small term (broadcast) and the other full-size term is one
    ``addcmul_``; the Python numbers go to ``value=``. NumPy has no fused multiply-add: there the
    sum is scaled in place at the end."""
    statements = batchnorm_backward(root, "torch")
    statement, lines = statements["dhprebn"]
    assert isinstance(statement.code, InPlace)
    assert statements["dhprebn_scale"][1] == ["dhprebn_scale = bngain*bnvar_inv"]
    assert lines == ["dhprebn = torch.addcmul(dbnbias*dhprebn_scale*quotient(-1, n), bnraw, "
                     "dbngain*dhprebn_scale, value=quotient(-1, n - 1))",
                     "dhprebn.addcmul_(dhpreact, dhprebn_scale)"]
    assert statements["dbnbias"][1] == ["dbnbias = leading_sums(dhpreact)"]
    # the column sum of a product never makes the product whole (``leading_dot``)
    assert statements["dbngain"][1] == ["dbngain = leading_dot(bnraw, dhpreact)"]
    statements = batchnorm_backward(root, "numpy")
    assert "dhprebn_scale" not in statements
    assert statements["dhprebn"][1] == [
        "dhprebn = bnraw*(dbngain*quotient(-1, n - 1))", "dhprebn += dhpreact", "dhprebn -= dbnbias/n",
        "dhprebn *= bngain*bnvar_inv"]
    assert statements["dbngain"][1] == ['dbngain = np.einsum("ij,ij->j", bnraw, dhpreact)']


def test_a_distributed_factor_gets_a_name_no_value_has(root):
    """The named row factor never shadows a value of the program or another statement."""
    program = load(root / "derivations" / "batchnorm.py")
    hprebn, bnraw = ArrayRef("hprebn"), ArrayRef("bnraw")
    gain, rstd, dbias = ArrayRef("bngain"), ArrayRef("bnvar_inv"), ArrayRef("bnbias")
    taken = ArrayStatement("out_scale", gain * 2)
    statement = ArrayStatement("out", (hprebn + bnraw * gain - dbias) * gain * rstd)
    result = fused([taken, statement], (program,), distribute=True)
    assert [s.name for s in result] == ["out_scale", "out_scale2", "out"]
    assert result[1].code == gain * rstd
    assert isinstance(result[2].code, InPlace)
    assert ArrayRef("out_scale2") in result[2].code.atoms(ArrayRef)


def test_a_column_factor_is_not_distributed_over_row_scaled_terms(root):
    """layernorm's ``dx = (dy*gamma - ... - xhat*c)*rstd[:, None]``: ``gamma*rstd[:, None]`` would
    be a full-size array of its own, so the sum is scaled in place at the end instead."""
    program = load(root / "derivations" / "layernorm.py")
    backward = derive_backward(program)
    statements = {s.name: s for s in fused(reuse_earlier(lower(backward)), (backward, program),
                                           distribute=True)}
    assert "dx_scale" not in statements
    lines = PRINTERS["torch"]().statement("dx", statements["dx"].code, False)
    assert lines[-1] == "dx.mul_(rstd[:, None])"


def test_leading_sums_stream_and_stay_as_accurate_as_sum(root, monkeypatch):
    """The emitted ``leading_sums`` against float64: a large float32 array with a common offset
    (the hard case for a running sum) and rows that 16 does not divide, eagerly (a BLAS
    matrix-vector product) and as traced by torch.compile (a reduction over 16 rows); its error
    is no larger than ``.sum``'s. Small, non-contiguous, integer and half-float arrays take
    ``.sum``."""
    program = load(root / "derivations" / "batchnorm.py")
    module = load_module(module_source(program, derive_backward(program), "torch"), "bn_sums")
    generator = torch.Generator().manual_seed(0)
    x = 100 + torch.randn(4100, 256, generator=generator)  # 4100 = 16*256 + 4 rows
    scale = x.double().abs().sum(0).max()

    def error(got, want):
        return float((got.double() - want).abs().max() / scale)

    want, plain = x.double().sum(0), x.sum(0)
    for compiling in (False, True):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
        got = module.leading_sums(x)
        assert got.shape == (256,) and got.dtype == torch.float32
        assert error(got, want) <= max(2 * error(plain, want), 1e-7)
        cube = x.reshape(41, 100, 256)
        assert error(module.leading_sums(cube, 2), want) <= max(2 * error(plain, want), 1e-7)
    for other in (x[:8], x.T.contiguous().T, x.to(torch.int64), x.to(torch.bfloat16)):
        assert torch.equal(module.leading_sums(other), other.sum(0))
    leaf = x.clone().requires_grad_()
    module.leading_sums(leaf).backward(torch.ones(256))
    assert torch.equal(leaf.grad, torch.ones_like(x))


def test_leading_dot_reads_blocks_and_stays_as_accurate_as_the_product_sum(root, monkeypatch):
    """The emitted ``leading_dot(a, b)`` against float64 ``(a*b).sum(0)``: large float32 arrays
    with a common offset, rows that the block does not divide and two leading axes; its error is
    no larger than that of ``(a*b).sum(0)``, eagerly (blocks of rows) and as traced by
    torch.compile (``leading_sums(a*b)``). Small, non-contiguous, mixed-dtype arrays and arrays
    autograd must see take ``leading_sums(a*b)``, gradients included."""
    program = load(root / "derivations" / "batchnorm.py")
    module = load_module(module_source(program, derive_backward(program), "torch"), "bn_dot")
    generator = torch.Generator().manual_seed(1)
    a = 10 + torch.randn(4100, 256, generator=generator)  # 4100 rows: blocks of 512 and a tail
    b = 10 + torch.randn(4100, 256, generator=generator)
    want = (a.double() * b.double()).sum(0)
    scale = (a.double() * b.double()).abs().sum(0).max()

    def error(got):
        return float((got.double() - want).abs().max() / scale)

    plain = error((a * b).sum(0))
    for compiling in (False, True):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
        got = module.leading_dot(a, b)
        assert got.shape == (256,) and got.dtype == torch.float32
        assert error(got) <= max(2 * plain, 1e-7)
        assert error(module.leading_dot(a.reshape(41, 100, 256), b.reshape(41, 100, 256), 2)) \
            <= max(2 * plain, 1e-7)
    monkeypatch.undo()
    for x, y in ((a[:8], b[:8]), (a.T.contiguous().T, b), (a, b.double())):
        assert torch.allclose(module.leading_dot(x, y).double(), (x * y).sum(0).double(),
                              rtol=1e-5, atol=1e-3)
    leaf = a.clone().requires_grad_()
    module.leading_dot(leaf, b).backward(torch.ones(256))
    assert torch.equal(leaf.grad, b)
    for empty in (torch.zeros(0, 5), torch.zeros(5, 0)):  # no rows or no columns
        assert torch.equal(module.leading_dot(empty, empty), empty.sum(0))


def test_the_helper_is_emitted_only_where_called(root):
    program = load(root / "derivations" / "batchnorm.py")
    backward = derive_backward(program)
    torch_text = module_source(program, backward, "torch")
    assert torch_text.count("def leading_sums(") == 1
    assert "leading_sums" not in module_source(program, backward, "numpy")
    program = load(root / "derivations" / "cross_entropy.py")
    text = module_source(program, derive_backward(program), "torch")
    assert ("def leading_sums(" in text) == ("leading_sums(" in text.replace(
        "def leading_sums(", ""))


def test_a_name_or_view_is_never_updated_in_place(root):
    program = load(root / "derivations" / "batchnorm.py")
    hprebn, bnraw, bngain = ArrayRef("hprebn"), ArrayRef("bnraw"), ArrayRef("bngain")
    # one full-size term that is a name: scaling it in place would change the input
    statement = ArrayStatement("out", bngain * (hprebn + bngain))
    (result,) = fused([statement], (program,))
    assert not isinstance(result.code, InPlace)
    (result,) = fused([ArrayStatement("out", hprebn + bnraw, accumulate=True)], (program,))
    assert not isinstance(result.code, InPlace)


def test_fused_modules_agree_with_the_closed_forms(root):
    """batchnorm and layernorm backward, both targets, against autograd of a hand-written
    forward in float64."""
    for name in ("batchnorm", "layernorm"):
        program = load(root / "derivations" / f"{name}.py")
        backward = derive_backward(program)
        modules = {t: load_module(module_source(program, backward, t), f"{name}_{t}")
                   for t in ("torch", "numpy")}
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.randn(*(int(s.subs(dict(program.sizes))) for s in program.shape(x.name)),
                              dtype=torch.float64, generator=generator) for x in program.inputs]
        leaves = [x.clone().requires_grad_() for x in inputs]
        values = modules["torch"].forward(*leaves)
        output = values[program.outputs[0]]
        upstream = torch.randn(output.shape, dtype=torch.float64, generator=generator)
        output.backward(upstream)
        for target, module in modules.items():
            given = inputs if target == "torch" else [x.numpy() for x in inputs]
            grads = module.backward(module.forward(*given), upstream if target == "torch"
                                    else upstream.numpy())
            for x, leaf in zip(program.inputs, leaves):
                np.testing.assert_allclose(np.asarray(grads[x.name]), leaf.grad.numpy(),
                                           rtol=1e-10, atol=1e-12)


def test_a_bias_plus_matmul_is_one_call(root):
    """``b1 + embcat @ W1`` as ``torch.addmm`` (NumPy keeps the sum); ``bnbias + bngain*bnraw``
    as ``torch.addcmul``: one pass, no temporary."""
    program = load(root / "derivations" / "makemore_mlp_layers.py")
    statements = {s.name: s for s in fused(lower(program), (program,), update=False)}
    torch_printer, numpy_printer = PRINTERS["torch"](), PRINTERS["numpy"]()
    lines = {name: torch_printer.statement(name, s.code, s.accumulate)
             for name, s in statements.items()}
    assert lines["hprebn"] == ["hprebn = torch.addmm(b1, embcat, W1)"]
    assert lines["hpreact"] == ["hpreact = torch.addcmul(bnbias, bnraw, bngain)"]
    s = statements["hprebn"]
    assert numpy_printer.statement("hprebn", s.code, False) == ["hprebn = b1 + embcat @ W1"]


def test_a_maximum_whose_position_the_backward_never_reads_skips_the_indices(root):
    """The cross-entropy shift's adjoint cancels, so its backward reads no ArgMax: ``amax``. A
    max-pool's backward routes its gradient to the argmax: ``.max(1).values``, whose autograd
    agrees with that rule at ties."""
    from sympy import Idx, IndexedBase, Sum, symbols

    from symderive import Builder, Maximum, normal

    program = load(root / "derivations" / "cross_entropy.py")
    text = module_source(program, derive_backward(program), "torch")
    assert "logits.amax(1)" in text and ".max(1).values" not in text
    n, V = symbols("n V", integer=True, positive=True)
    i, c = Idx("i", n), Idx("c", V)
    x, m = symbols("x m", cls=IndexedBase)
    loss = symbols("loss")
    pool = Builder("pool", sizes={n: 4, V: 5})
    pool.input(x[i, c], normal(1.0))
    pool[m[i]] = Maximum(x[i, c], c)
    pool[loss] = Sum(m[i], i)
    pool.loss(loss)
    pool = pool.build()
    text = module_source(pool, derive_backward(pool), "torch")
    assert "m_max = x.max(1)" in text and "amax" not in text


def test_a_maximum_read_back_as_its_argmax_saves_its_indices(root):
    """Max pooling's backward sends each window's gradient to its argmax: in torch the forward
    finds maxima and indices in one call and saves the indices (the Function returns them, the
    backward reads them, no window is searched twice); NumPy searches again. The modules agree
    with F.max_pool1d and its autograd."""
    program = load(root / "examples" / "layers" / "max_pool_overlap.py")
    backward = derive_backward(program)
    text = module_source(program, backward, "torch")
    forward = text[text.index("def forward("):text.index("def backward(")]
    assert "y_max = x.unfold(2, 3, 2).max(3)" in forward and "y_argmax = y_max[1]" in forward
    backward_text = text[text.index("def backward("):text.index("class ")]
    assert "argmax(" not in backward_text and 'y_argmax = values["y_argmax"]' in backward_text
    assert 'SAVED = ("y_argmax",)' in text
    assert ".argmax(3)" in module_source(program, backward, "numpy")
    module = load_module(text, "pool_saved_indices")
    x = torch.randn(2, 3, 11, dtype=torch.float64)
    x[0, 0, 2] = x[0, 0, 1]  # a tie: torch's rule, the first index, for both
    dy = torch.randn(2, 3, 5, dtype=torch.float64)
    leaf = x.clone().requires_grad_()
    (ours,) = torch.autograd.grad(module.max_pool_overlap(leaf), leaf, dy)
    (theirs,) = torch.autograd.grad(torch.nn.functional.max_pool1d(leaf, 3, 2), leaf, dy)
    assert torch.equal(ours, theirs)


def test_indices_are_not_saved_across_a_change_to_what_the_maximum_reads():
    """The backward's argmax must see the values the forward's maximum saw: an array the
    backward assigns, or the forward assigns twice, keeps the search in the backward."""
    from symderive.codegen.arrays import ArgMaxAxis, MaxAxis
    from symderive.codegen.fuse import saved_indices

    x, dy = ArrayRef("x"), ArrayRef("dy")
    forward = [ArrayStatement("m", MaxAxis(x, 1))]
    backward = [ArrayStatement("dx", dy * ArgMaxAxis(x, 1))]
    found, read, saved = saved_indices(forward, backward, {"x", "m", "dx", "dy"})
    assert [s.name for s in found] == ["m_max", "m", "m_argmax"] and saved == ["m_argmax"]
    assert read[0].code == dy * ArrayRef("m_argmax")
    assigned = [ArrayStatement("x", 2 * dy)] + backward
    assert saved_indices(forward, assigned, {"x", "m", "dx", "dy"}) == (forward, assigned, [])
    twice = [ArrayStatement("x", 2 * dy), ArrayStatement("x", 3 * dy)] + forward
    assert saved_indices(twice, backward, {"x", "m", "dx", "dy"}) == (twice, backward, [])


def test_a_statement_reading_its_own_name_is_not_updated_in_place(root):
    """``da1 = f + da1 + g`` (an upstream adjoint added to): after ``da1 = f + g`` the name holds
    the new array, so ``da1.add_(da1)`` would double it. Found by the fuzzer."""
    program = load(root / "derivations" / "layernorm.py")
    dy, xhat, gamma = ArrayRef("dy"), ArrayRef("xhat"), ArrayRef("gamma")
    x = ArrayRef("x")
    statement = ArrayStatement("x", dy * gamma + x + xhat * gamma)
    (result,) = fused([statement], (program,))
    assert not isinstance(result.code, InPlace)


def test_one_call_needs_an_array_to_add_to(root):
    """``1 + x @ W`` stays a sum: torch.addmm and addcmul take a tensor, not a number."""
    from symderive.codegen.fuse import AddMatMul, one_call

    program = load(root / "derivations" / "makemore_mlp_layers.py")
    extents = Extents((program,))
    embcat, W1, b1 = ArrayRef("embcat"), ArrayRef("W1"), ArrayRef("b1")
    assert isinstance(one_call(b1 + MatMul(embcat, W1), extents), AddMatMul)
    assert one_call(1 + MatMul(embcat, W1), extents) == 1 + MatMul(embcat, W1)
    bnraw, bngain = ArrayRef("bnraw"), ArrayRef("bngain")
    assert one_call(2 + bngain * bnraw, extents) == 2 + bngain * bnraw


def test_a_sum_of_matrix_products_is_addmm_calls(root):
    """An LSTM gate's pre-activation ``b + h @ U + x @ W`` is two nested addmm calls (no
    temporary for each product and each sum), and its input adjoint, four products, one product
    then addmm_ updates in place; NumPy spells the same sums with ``@`` and ``+=``."""
    program = load(root / "examples" / "layers" / "lstm.py")
    backward = derive_backward(program)
    text = module_source(program, backward, "torch")
    assert "ai = torch.addmm(torch.addmm(bi, hp, Ui), x, Wi)" in text
    assert "dx = torch.addmm(daf @ Wf.T, dag, Wg.T)" in text and "dx.addmm_(dai, Wi.T)" in text
    numpy = module_source(program, backward, "numpy")
    assert "ai = bi + hp @ Ui + x @ Wi" in numpy and "dx += dai @ Wi.T" in numpy


def test_a_reduction_computed_twice_is_named_once(root):
    """The double backward of batchnorm held ``leading_dot(bnraw, grad_hpreact)`` four times and
    ``leading_dot(bnraw, dgrad_hprebn)`` three; each is now one statement, guarded like its
    users, and the first, which its forward (the first-order gradients) computed as
    ``grad_bngain``, is read back from it (``saved_reductions``), not computed again."""
    text = (root / "generated" / "batchnorm_biased_torch.py").read_text()
    double = text[text.index("def double_backward"):text.index("class ")]
    for call in ("leading_dot(bnraw, dgrad_hprebn)",
                 "leading_dot(dgrad_hprebn, grad_hpreact)", "leading_sums(dgrad_hprebn)"):
        assert double.count(call) == 1, call
    assert "leading_dot(bnraw, grad_hpreact)" not in double
    assert 'grad_bngain = values["grad_bngain"]' in double
    # its forward (the first-order gradients) reads grad_bngain rather than summing again
    gradients = text[text.index("def gradients"):text.index("def double_backward")]
    assert gradients.count("leading_dot(bnraw, grad_hpreact)") == 1


def test_a_reduction_the_forward_computed_is_saved_for_the_backward(root):
    """logsumexp's input adjoint divides by ``exp(z - m).sum(1)``, which its forward computed
    inside ``y = m + log(...)``: the forward names it and the backward reads it (one exp pass
    fewer), in both targets; a reduction over an array the backward assigns is computed again."""
    from symderive.codegen.arrays import SumAxes
    from symderive.codegen.fuse import saved_reductions

    program = load(root / "examples" / "layers" / "logsumexp.py")
    backward = derive_backward(program)
    for target in ("torch", "numpy"):
        text = module_source(program, backward, target)
        forward = text[text.index("def forward("):text.index("def backward(")]
        backward_text = text[text.index("def backward("):].split("\n\n\n")[0]
        assert "sum_m_z = " in forward and "y = m + " in forward and "log(sum_m_z)" in forward
        assert 'sum_m_z = values["sum_m_z"]' in backward_text and ".sum(" not in backward_text
    x, m, dy = ArrayRef("x"), ArrayRef("m"), ArrayRef("dy")
    total = SumAxes(sp.exp(x), sp.Tuple(1), 2)
    forward = [ArrayStatement("m", sp.log(total))]
    backward = [ArrayStatement("dx", dy / total)]
    found, read, saved = saved_reductions(forward, backward, {"x", "m", "dx", "dy"})
    assert [s.name for s in found] == ["sum_x", "m"] and saved == ["sum_x"]
    assert read[0].code == dy / ArrayRef("sum_x")
    assigned = [ArrayStatement("x", 2 * dy)] + backward
    assert saved_reductions(forward, assigned, {"x", "m", "dx", "dy"}) == (forward, assigned, [])


def test_a_reduction_is_not_shared_across_a_change_to_what_it_reads():
    from symderive.codegen.arrays import SumAxes
    from symderive.codegen.fuse import LeadingSums, shared_reductions

    x, y, a = ArrayRef("x"), ArrayRef("y"), ArrayRef("a")
    total = LeadingSums(SumAxes(x, sp.Tuple(0), 2))
    same = [ArrayStatement("p", a * total), ArrayStatement("q", y + total)]
    shared = shared_reductions(same, {"x", "y", "a", "p", "q"})
    assert [s.name for s in shared] == ["sum_x", "p", "q"]
    assert shared[0].code == total and shared[2].code == y + ArrayRef("sum_x")
    # x assigned between the uses: the second sum reads another x
    changed = [same[0], ArrayStatement("x", 2 * y), same[1]]
    assert shared_reductions(changed, {"x", "y", "a", "p", "q"}) == changed
    # an accumulation between the uses may write through a view of x
    added = [same[0], ArrayStatement("z", y, accumulate=True), same[1]]
    assert shared_reductions(added, {"x", "y", "a", "p", "q", "z"}) == added
    # the name is fresh: a value already called sum_x keeps its name
    assert shared_reductions(same, {"x", "y", "a", "p", "q", "sum_x"})[0].name == "sum_x2"


def test_a_recurring_elementwise_subexpression_is_computed_once_unless_its_inputs_change():
    """The largest sum or function of arrays (two operations or more) that two statements
    compute is named and computed once, before its first use, under shared_reductions' side
    condition; one operation alone (a sum of two arrays) is left inline."""
    from symderive.codegen.fuse import shared_subexpressions

    x, y, a, b = ArrayRef("x"), ArrayRef("y"), ArrayRef("a"), ArrayRef("b")
    common = x + y * sp.tanh(a)
    same = [ArrayStatement("p", b * common), ArrayStatement("q", (1 - b) * common)]
    shared = shared_subexpressions(same, {"x", "y", "a", "b", "p", "q"})
    assert [s.name for s in shared] == ["common_a_x_y", "p", "q"]
    assert shared[0].code == common and shared[1].code == b * ArrayRef("common_a_x_y")
    changed = [same[0], ArrayStatement("a", 2 * y), same[1]]
    assert shared_subexpressions(changed, {"x", "y", "a", "b", "p", "q"}) == changed
    small = [ArrayStatement("p", b * (x + y)), ArrayStatement("q", a * (x + y))]
    assert shared_subexpressions(small, {"x", "y", "a", "b", "p", "q"}) == small


def test_the_lstm_backward_computes_its_cell_adjoint_once(root):
    """dcn + dhn*og*(1 - tanh(cn)**2) is read by the four gate adjoints and dcp: one pass; and
    tanh(cn), which the forward computes for hn, is saved and read back, not computed again
    (``saved_reductions``: autograd's tanh saves its result too)."""
    program = load(root / "examples" / "layers" / "lstm.py")
    source = module_source(program, derive_backward(program), "torch")
    forward = source[source.index("def forward"):source.index("def backward")]
    backward = source[source.index("def backward"):source.index("def gradients")]
    assert backward.count("tanh_cn**2") == 1 and "torch.tanh" not in backward, backward
    assert "tanh_cn = torch.tanh(cn)" in forward and "hn = og*tanh_cn" in forward, forward
    assert 'tanh_cn = values["tanh_cn"]' in backward
