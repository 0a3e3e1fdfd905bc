"""Fusion: small factors meet each other before a full-size array, and a sum of full-size terms is
computed in one fresh array updated in place; the fused code computes the same values."""
import numpy as np
import sympy as sp
import torch

from symderive.check import load_module
from symderive.derivation import derive_backward, load
from symderive.emit import module_source, reuse_earlier
from symderive.fuse import Extents, Grouped, InPlace, folded, fused
from symderive.lower import ArrayRef, ArrayStatement, MatMul, NewAxes, lower
from symderive.printing import PRINTERS


def batchnorm_backward(root, target):
    program = load(root / "derivations" / "batchnorm.py")
    backward = derive_backward(program)
    statements = fused(reuse_earlier(lower(backward)), (backward, program))
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
    assert PRINTERS["torch"]().doprint(code) == "bnraw*(bngain*bnvar_inv*(-1/(n - 1)))"
    assert folded(bngain * bnraw, extents) == bngain * bnraw  # one small factor: nothing to do
    assert folded(-bnraw, extents) == -bnraw


def test_batchnorm_backward_makes_three_full_size_writes(root):
    statement, lines = batchnorm_backward(root, "torch")["dhprebn"]
    assert isinstance(statement.code, InPlace)
    assert lines == ["dhprebn = torch.addcmul(dhpreact, bnraw, dbngain/(n - 1), value=-1)",
                     "dhprebn.sub_(dbnbias/n)", "dhprebn.mul_(bngain*bnvar_inv)"]
    _, lines = batchnorm_backward(root, "numpy")["dhprebn"]
    assert lines == ["dhprebn = bnraw*(dbngain*(-1/(n - 1)))", "dhprebn += dhpreact",
                     "dhprebn -= dbnbias/n", "dhprebn *= bngain*bnvar_inv"]


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
    assert "m = x.max(1).values" in text and "amax" not in text


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
    from symderive.fuse import AddMatMul, one_call

    program = load(root / "derivations" / "makemore_mlp_layers.py")
    extents = Extents((program,))
    embcat, W1, b1 = ArrayRef("embcat"), ArrayRef("W1"), ArrayRef("b1")
    assert isinstance(one_call(b1 + MatMul(embcat, W1), extents), AddMatMul)
    assert one_call(1 + MatMul(embcat, W1), extents) == 1 + MatMul(embcat, W1)
    bnraw, bngain = ArrayRef("bnraw"), ArrayRef("bngain")
    assert one_call(2 + bngain * bnraw, extents) == 2 + bngain * bnraw
