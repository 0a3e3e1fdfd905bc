"""Normalisation over trailing axes as ATen's kernels: LayerNorm, GroupNorm and InstanceNorm
written out are one forward call and one backward call in torch (NumPy keeps the derived
statements), each statement checked against the form the kernel computes; a normalisation over a
leading axis, Bessel's divisor, a variance of another centring or a gradient of another form is
left as derived."""
import runpy

import pytest
import sympy as sp
import torch
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal
from symderive.algebra.simplify import derive_backward
from symderive.codegen.emit import module_source
from symderive.codegen.normalization import normalizations
from symderive.program.load import load
from symderive.verify.check import load_module, run_check

n, d = symbols("n d", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j = Idx("i", n), Idx("j", d)
x, gamma, beta, mu, xc, xc2, var, rstd, xhat, y = symbols(
    "x gamma beta mu xc xc2 var rstd xhat y", cls=IndexedBase)


def _program(path):
    return load(path) if path.parent.name == "derivations" else \
        runpy.run_path(str(path))["program"]


def _section(source: str, name: str) -> str:
    start = source.index(f"def {name}(")
    return source[start:source.index("\n\n\n", start)]


CASES = [("derivations/layernorm.py", "native_layer_norm"),
         ("derivations/layernorm_positions.py", "native_layer_norm"),
         ("examples/layers/groupnorm.py", "native_group_norm"),
         ("examples/layers/instancenorm.py", "native_group_norm")]


@pytest.mark.parametrize("path, kernel", CASES, ids=[c[0].split("/")[-1][:-3] for c in CASES])
def test_a_normalisation_is_one_kernel_call_each_way_in_torch(root, path, kernel):
    program = _program(root / path)
    backward = derive_backward(program)
    source = module_source(program, backward, "torch")
    assert f"torch.{kernel}(" in _section(source, "lean_forward")
    assert f"torch.ops.aten.{kernel}_backward(" in _section(source, "backward")
    numpy = module_source(program, backward, "numpy")
    assert "native" not in numpy
    # the Function (kernels both ways) against autograd through the plain forward, in float64
    module = load_module(source, f"{program.name}_kernels")
    generator = torch.Generator().manual_seed(0)
    shapes = [tuple(int(s.subs(dict(program.sizes))) for s in program.shape(v.name))
              for v in program.inputs]
    leaves = [torch.randn(shape, generator=generator, dtype=torch.float64) + 3
              for shape in shapes]
    leaves = [leaf.requires_grad_() for leaf in leaves]
    reference = next(f for kind, _, f in program.references if kind == "forward")
    ours, theirs = getattr(module, program.name)(*leaves), reference(*leaves)
    assert torch.allclose(ours, theirs, atol=1e-12)
    upstream = torch.randn(ours.shape, generator=generator, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(ours, leaves, upstream),
                    torch.autograd.grad(theirs, leaves, upstream)):
        assert torch.allclose(a, b, atol=1e-10)


def _view(shape, generator):
    """A float64 array of ``shape`` that is a non-contiguous view (its axes stored reversed)."""
    return torch.randn(shape[::-1], generator=generator, dtype=torch.float64).permute(
        *range(len(shape) - 1, -1, -1))


@pytest.mark.parametrize("path, kernel", CASES, ids=[c[0].split("/")[-1][:-3] for c in CASES])
def test_the_kernels_read_views_as_autograd_hands_them(root, path, kernel):
    """The kernels read their operands' memory row-major, the group-norm ones without checking:
    a scalar loss's upstream adjoint (expanded, stride 0), a transposed one, a permuted input and
    an expanded gain are made contiguous first, so the Function agrees with autograd through the
    reference on each (found by a red-team pass: garbage gradients, or a crash, before)."""
    program = _program(root / path)
    module = load_module(module_source(program, derive_backward(program), "torch"),
                         f"{program.name}_views")
    entry = getattr(module, program.name)
    reference = next(f for kind, _, f in program.references if kind == "forward")
    shapes = [tuple(int(s.subs(dict(program.sizes))) for s in program.shape(v.name))
              for v in program.inputs]
    generator = torch.Generator().manual_seed(2)
    x = _view(shapes[0], generator).requires_grad_()
    scale = torch.randn(1, generator=generator, dtype=torch.float64).requires_grad_()
    beta = torch.randn(shapes[2], generator=generator, dtype=torch.float64).requires_grad_()
    gamma = (1 + scale).expand(shapes[1])  # an expanded gain: stride 0
    leaves = (x, scale, beta)
    for loss in (lambda y: y.sum(), lambda y: (y * _view(tuple(y.shape), generator)).sum()):
        generator.manual_seed(3)
        ours = torch.autograd.grad(loss(entry(x, gamma, beta)), leaves)
        generator.manual_seed(3)
        theirs = torch.autograd.grad(loss(reference(x, gamma, beta)), leaves)
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()


def _layernorm(divisor=d, centred_square=True, affine_over=(j,)):
    b = Builder("ln_variant", sizes={n: 3, d: 4}, constants={eps: 1e-5})
    b.input(x[i, j], normal(1.0))
    b.input(gamma[affine_over], normal(0.1, mean=1.0))
    b.input(beta[affine_over], normal(0.1))
    b[mu[i]] = Sum(x[i, j], j) / d
    b[xc[i, j]] = x[i, j] - mu[i]
    b[xc2[i, j]] = xc[i, j] ** 2 if centred_square else x[i, j] ** 2
    b[var[i]] = Sum(xc2[i, j], j) / divisor
    b[rstd[i]] = (var[i] + eps) ** Rational(-1, 2)
    b[xhat[i, j]] = xc[i, j] * rstd[i]
    b[y[i, j]] = gamma[affine_over] * xhat[i, j] + beta[affine_over]
    b.output(y)
    return b.build()


def test_the_statistics_decide_the_forward_kernel_and_the_gradients_the_backward_one():
    """The biased variance of the centred values: both kernels. Bessel's ``d - 1``, or a mean of
    ``x**2`` (not centred), is not the kernel's statistic, and the gradient it gives has other
    terms than the kernel's (``d - 1`` where the kernel divides by ``d``; the uncentred square's
    own terms): neither kernel, although ``xhat = (x - mu)*rstd`` still matches."""
    (found,) = normalizations(_layernorm())
    assert found.eps == eps and found.layer and (found.x, found.mu, found.rstd) == ("x", "mu", "rstd")
    for variant in (_layernorm(divisor=d - 1), _layernorm(centred_square=False)):
        (found,) = normalizations(variant)
        assert found.eps is None  # the forward kernel does not apply
        source = module_source(variant, derive_backward(variant), "torch")
        assert "native_layer_norm" not in source


def test_a_gain_per_row_is_the_group_kernel_with_a_group_per_row():
    """``gamma[i]`` (per row) is group norm's layout with the rows as channels, one per group
    (``x`` as ``(1, n, d)``): both kernels, and the gradients agree with the NumPy module's,
    which has none."""
    program = _layernorm(affine_over=(i,))
    (found,) = normalizations(program)
    assert not found.layer and found.group_sizes() == (1, n, d, n)
    backward = derive_backward(program)
    source = module_source(program, backward, "torch")
    assert "native_group_norm_backward(" in _section(source, "backward")
    torch_module = load_module(source, "ln_rows_torch")
    numpy_module = load_module(module_source(program, backward, "numpy"), "ln_rows_numpy")
    generator = torch.Generator().manual_seed(1)
    leaves = [torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()
              for shape in ((3, 4), (3,), (3,))]
    upstream = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    ours = torch.autograd.grad(torch_module.ln_variant(*leaves), leaves, upstream)
    plain = [leaf.detach().numpy() for leaf in leaves]
    values = numpy_module.forward(*plain)
    theirs = numpy_module.backward(values, upstream.numpy())
    for name, grad in zip(("x", "gamma", "beta"), ours):
        assert abs(grad.numpy() - theirs[name]).max() < 1e-12, name


def test_batchnorm_over_the_leading_axis_keeps_its_derived_statements(root):
    for name in ("batchnorm", "batchnorm_biased"):
        program = load(root / "derivations" / f"{name}.py")
        assert normalizations(program) == []
        assert "native_" not in module_source(program, derive_backward(program), "torch")


def test_a_normalisation_inside_a_model_uses_the_kernels_where_its_gradients_match(root):
    """The GPT's five LayerNorms: each forward is the kernel, and so is each backward; a
    block's input adjoint also collects the residual branch, which is added to the kernel's dx
    (``db1_mid = db1_out + ...[0]``)."""
    program = load(root / "derivations" / "gpt.py")
    source = (root / "generated" / "gpt_torch.py").read_text()
    assert _section(source, "lean_forward").count("torch.native_layer_norm(") == 5
    backward = _section(source, "backward")
    assert backward.count("native_layer_norm_backward(") == 5
    assert "db1_mid = db1_out + b1_mid_norm_grads[0]" in backward
    assert "xhat" not in backward  # every gradient of a LayerNorm is the kernel's
    assert len(normalizations(program)) == 5


def test_a_residual_is_added_to_the_kernel_s_dx_and_nothing_else_is(root):
    """``out = x - 3*LayerNorm(x)`` (the layernorm derivation included, as the GPT does): dx is
    the kernel's plus ``dout``, and the Function's gradients are autograd's; where ``x`` also
    feeds something other than a plain read (``x**2``), dx is not the kernel's."""
    n, d = sp.symbols("n d", integer=True, positive=True)
    i, j = sp.Idx("i", n), sp.Idx("j", d)
    x, g, b, y, out = sp.symbols("x g b y out", cls=sp.IndexedBase)

    def program(residual):
        builder = Builder("residual", sizes={n: 5, d: 4})
        builder.input(x[i, j], normal(1.0))
        builder.input(g[j], normal(0.1, mean=1.0))
        builder.input(b[j], normal(0.1))
        builder.include(load(root / "derivations" / "layernorm.py"), prefix="ln_", x="x",
                        gamma="g", beta="b", y="y")
        builder[out[i, j]] = residual - 3 * y[i, j]
        builder.output(out)
        return builder.build()

    plain = program(x[i, j])
    backward = _section(module_source(plain, derive_backward(plain), "torch"), "backward")
    assert backward.count("native_layer_norm_backward(") == 1, backward
    assert "dx = dout + x_norm_grads[0]" in backward, backward
    report = run_check(plain, "float64", seed=2)
    assert report.ok, report.table()
    square = program(x[i, j] ** 2)
    assert "native_layer_norm_backward(" not in _section(
        module_source(square, derive_backward(square), "torch"), "backward")
