"""Layers with shifted and sliding-window reads (examples/layers/): convolutions (``x[i, c, p +
u]``, strided and dilated ``x[i, c, 2*p + 2*u]``, two windows ``x[i, c, p + u, q + v]``) and a GLU
(``x[i, j]``, ``x[i, j + H]``). Their lowered forward and backward match the naive loop oracle
statement by statement, the code is vectorised (one library convolution per statement, slices,
pads) and the full check passes against F.conv1d / F.conv2d / F.glu."""
import math
import runpy
from dataclasses import replace

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, symbols

from symderive import Builder, normal
from symderive.algebra.simplify import derive_backward
from symderive.codegen.helpers import helpers
from symderive.codegen.lower import lower
from symderive.codegen.printing import PRINTERS
from symderive.program.ir import ProgramError, indices_of
from symderive.verify.check import run_check

from .interpret import tensor

LAYERS = ["conv1d", "glu", "conv1d_strided", "conv2d"]
REFERENCES = {"conv1d": "F.conv1d", "glu": "F.glu", "conv1d_strided": "F.conv1d",
              "conv2d": "F.conv2d"}


def load(root, name):
    return runpy.run_path(str(root / "examples" / "layers" / f"{name}.py"))["program"]


def _axes(lhs):
    return [k for index in indices_of(lhs)
            for k in ([index] if isinstance(index, sp.Idx) else sorted(index.atoms(sp.Idx), key=str))]


def _run(program, arrays, sizes, target):
    """Execute every lowered statement of ``program``; check each against the loop oracle."""
    printer = PRINTERS[target]()
    env_sizes = {str(s): v for s, v in sizes.items()}
    if target == "numpy":
        env = {"np": np, "math": math, "dtype": np.float64, **arrays, **env_sizes}
    else:
        env = {"torch": torch, "F": torch.nn.functional, "math": math, "dtype": torch.float64,
               "device": "cpu", **{k: torch.as_tensor(v) for k, v in arrays.items()}, **env_sizes}
    lines = []
    for statement in lower(program):
        lines += printer.statement(statement.name, statement.code, statement.accumulate)
    for helper in helpers("\n".join(lines), target):  # conv(...) in NumPy, conv_weight(...)
        exec(helper, env)  # noqa: S102 - emitted helpers, as the module defines them
    exec("\n".join(lines), env)  # noqa: S102 - the code under test
    for s in program.body:
        assert not s.accumulate  # the compact backward: one statement per gradient
        got = env[s.name].numpy() if target == "torch" else env[s.name]
        expected = tensor(s.rhs, _axes(s.lhs), arrays, sizes)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        arrays[s.name] = np.asarray(got)
    return lines


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("name", LAYERS)
def test_layer_lowers_to_vectorised_code_that_matches_the_loop_oracle(root, name, target):
    program = load(root, name)
    if name == "conv2d":  # the loop oracle walks 7 indices: small sizes keep it short
        small = {"n": 1, "C": 2, "O": 2, "P": 3, "Q": 3, "U": 2, "V": 2}
        program = replace(program, sizes=tuple((s, small[str(s)]) for s, _ in program.sizes))
    sizes = program.example_sizes()
    rng = np.random.default_rng(0)
    arrays = {x.name: rng.normal(size=tuple(int(sp.sympify(s).subs(sizes))
                                            for s in program.shape(x.name)))
              for x in program.inputs}
    forward_lines = _run(program, arrays, sizes, target)
    backward = derive_backward(program)
    for name_ in program.outputs:
        arrays["d" + name_] = rng.normal(size=arrays[name_].shape)
    backward_lines = _run(backward, arrays, sizes, target)
    text = "\n".join(forward_lines + backward_lines)
    assert "for " not in text  # no Python loop over data
    if name == "glu":
        assert "x[:, :H]" in text and "x[:, H:2*H]" in text
        assert ("np.pad(" if target == "numpy" else "F.pad(") in text
    elif name == "conv1d":  # the forward, dx and dw: one convolution each, no index arrays
        assert ("F.conv1d(x, w)" if target == "torch" else "conv(x, w, (1,), (1,))") in text
        assert ("F.conv_transpose1d(dy, w)" if target == "torch"
                else "conv_transpose(dy, w, (1,), (1,))") in text
        assert "conv_weight(dy, x, (1,), (1,))" in text and "arange" not in text  # aten_ in torch
    elif name == "conv1d_strided":  # one position past the reach: no window (fewer than a
        # stride), so x is read whole, no strided copy; dx's zeros there torch's output_padding
        assert ("F.conv1d(x, w, stride=2, dilation=2)" if target == "torch"
                else "conv(x, w, (2,), (2,))") in text
        assert "conv_weight(dy, x, (2,), (2,))" in text
        assert ("F.conv_transpose1d(dy, w, stride=2, dilation=2, output_padding=1)"
                if target == "torch" else
                "np.pad(conv_transpose(dy, w, (2,), (2,)), ((0, 0), (0, 0), (0, 1)))") in text
    else:
        assert ("F.conv_transpose2d(dy, w)" if target == "torch"
                else "conv_transpose(dy, w, (1, 1), (1, 1))") in text
        assert "conv_weight(dy, x, (1, 1), (1, 1))" in text and "one_hot" not in text


@pytest.mark.parametrize("name", LAYERS)
def test_layer_passes_the_check_against_its_torch_reference(root, name):
    program = load(root, name)
    for dtype in ("float64", "float32"):  # P and H are read from axes of P + U - 1 and 2*H
        report = run_check(program, dtype)
        assert report.ok, str(report)
    assert REFERENCES[name] in str(report)


def test_a_tail_a_stride_long_is_cut_and_padded(root, tmp_path):
    """Three positions past the windows' reach (a stride is 2): the floor would add a window, so
    the convolution reads ``x`` cut to the reach, and ``dx``'s zeros there are a pad (torch's
    output_padding takes fewer than a stride or a dilation); the check passes."""
    text = (root / "examples" / "layers" / "conv1d_strided.py").read_text()
    assert 'Idx("l", 2 * P + 2 * U - 2)' in text
    path = tmp_path / "conv_long_tail.py"
    reference = "F.conv1d(x, w, b, stride=2, dilation=2)"
    assert reference in text  # torch's floor would add a window: the reference reads the reach
    path.write_text(text.replace('Idx("l", 2 * P + 2 * U - 2)', 'Idx("l", 2 * P + 2 * U)')
                    .replace(reference, "F.conv1d(x[:, :, :-3], w, b, stride=2, dilation=2)"))
    program = runpy.run_path(str(path))["program"]
    source = "\n".join(PRINTERS["torch"]().statement(s.name, s.code, s.accumulate)[-1]
                       for s in lower(program) + lower(derive_backward(program), program))
    assert "F.conv1d(x[:, :, :2*P + 2*U - 3], w, stride=2, dilation=2)" in source
    assert "F.pad(F.conv_transpose1d(dy, w, stride=2, dilation=2), (0, 3))" in source
    assert "aten_conv_weight(dy, x[:, :, :2*P + 2*U - 3], (2,), (2,))" in source
    for dtype in ("float64", "float32"):
        report = run_check(program, dtype)
        assert report.ok, str(report)


@pytest.mark.parametrize("stride, dilation, outputs, taps, tail", [
    (3, 1, 4, 2, 1), (3, 1, 4, 2, 2), (1, 3, 4, 2, 1), (2, 3, 4, 2, 2),  # dw's taps from x
    (2, 1, 2, 5, 1), (1, 2, 2, 5, 1), (2, 3, 2, 5, 2), (2, 2, 4, 3, 1)])  # a kernel longer
def test_a_tail_past_the_reach_is_read_whole_only_where_no_call_counts_it(
        stride, dilation, outputs, taps, tail):
    """``y[i, o, p] = Sum(w[o, c, u]*x[i, c, s*p + d*u], c, u)`` with ``x`` longer than the
    windows reach by ``tail``: read whole only where the tail is fewer positions than the step
    between the outputs of every call that reads it (the convolution's, the weight-gradient
    kernel's, and ATen's check of the convolution that kernel differentiates), else cut; the
    check passes in every case (a red-team pass found dw with an extra tap and, where the kernel
    is longer than the output, a forward with an extra output, before)."""
    n_, c_, o_, p_, u_ = symbols("n C O P U", integer=True, positive=True)
    i_, ch, o, q, k = Idx("i", n_), Idx("c", c_), Idx("o", o_), Idx("p", p_), Idx("u", u_)
    length = Idx("l", stride * (p_ - 1) + dilation * (u_ - 1) + 1 + tail)
    xs, ws, ys = symbols("x w y", cls=IndexedBase)
    b = Builder("conv_tail", sizes={n_: 2, c_: 2, o_: 3, p_: outputs, u_: taps})
    b.input(xs[i_, ch, length], normal(1.0))
    b.input(ws[o, ch, k], normal(0.3))
    b[ys[i_, o, q]] = Sum(ws[o, ch, k] * xs[i_, ch, stride * q + dilation * k], ch, k)
    b.output(ys)
    program = b.build()
    report = run_check(program, "float64")
    assert report.ok, str(report)


n, C, P, U, H = symbols("n C P U H", integer=True, positive=True)
i, c, p, u, j = Idx("i", n), Idx("c", C), Idx("p", P), Idx("u", U), Idx("j", H)
x, y = symbols("x y", cls=IndexedBase)


@pytest.mark.parametrize("read, size, fits", [
    (lambda: x[i, p + u], P + U - 1, True),
    (lambda: x[i, p + u], P + U, True),
    (lambda: x[i, p + u], P + U - 2, False),
    (lambda: x[i, j + H], 2 * H, True),
    (lambda: x[i, j + H + 1], 2 * H, False),
    (lambda: x[i, j - 1], 2 * H, False),
    (lambda: x[i, j], 2 * H, True),
])
def test_affine_reads_must_stay_inside_the_axis(read, size, fits):
    lhs = y[i, p] if read().has(p) else y[i, j]
    rhs = Sum(read(), u) if read().has(u) else read()
    b = Builder("shift", sizes={n: 2, C: 2, P: 3, U: 2, H: 3})
    b.input(x[i, Idx("l", size)])
    b[lhs] = rhs
    b.output(y)
    if fits:
        b.build()
    else:
        with pytest.raises(ProgramError, match="not all inside axis 1 of 'x'|ranges over"):
            b.build()


def test_the_adjoint_of_a_window_keeps_its_delta():
    b = Builder("window", sizes={n: 2, P: 3, U: 2})
    b.input(x[i, Idx("l", P + U - 1)])
    b[y[i, p]] = Sum(x[i, p + u], u)
    b.output(y)
    (statement,) = derive_backward(b.build()).body
    assert statement.rhs.has(KroneckerDelta)  # p + u is no index to substitute


def test_a_diagonal_read_and_a_free_delta_in_the_forward():
    """``y[i] = X[i, i]*v[i]`` reads a diagonal (advanced indexing by two aranges) and
    ``z[i, k] = KroneckerDelta(i, k)*v[i]*y[k] + X[i, k]`` has a free delta (an identity matrix);
    forward and backward pass the check."""
    b = Builder("diagonal", sizes={n: 5})
    k = Idx("k", n)
    X, v, z = symbols("X v z", cls=IndexedBase)
    b.input(X[i, k])
    b.input(v[i])
    b[y[i]] = X[i, i] * v[i]
    b[z[i, k]] = KroneckerDelta(i, k) * v[i] * y[k] + X[i, k]
    b.output(y, z)
    report = run_check(b.build(), "float64")
    assert report.ok, str(report)


def test_a_delta_between_ranges_of_two_lengths_is_a_rectangular_identity():
    b = Builder("rectangle", sizes={n: 3, H: 2})
    l = Idx("l", 2 * H)
    x2 = IndexedBase("x2")
    b.input(x2[i, l])
    b[y[i, j, l]] = KroneckerDelta(j, l) * x2[i, l] + x2[i, j]
    b.output(y)
    program = b.build()
    (statement,) = lower(program)
    text = "\n".join(PRINTERS["numpy"]().statement("y", statement.code, False))
    assert "np.eye(H, 2*H" in text
    rng = np.random.default_rng(1)
    arrays = {"x2": rng.normal(size=(3, 4))}
    env = {"np": np, "math": math, "dtype": np.float64, "n": 3, "H": 2, **arrays}
    exec(text, env)  # noqa: S102 - the code under test
    np.testing.assert_allclose(env["y"], tensor(program.body[0].rhs, [i, j, l], arrays,
                                                {n: 3, H: 2}), rtol=1e-12)


def test_a_window_read_twice_adds_a_scatter_and_a_one_hot():
    """Two reads of one input (a window and a whole row) give an adjoint that is no single scatter:
    the window's delta lowers to a one-hot over ``p + u``, still without a loop."""
    b = Builder("twice", sizes={n: 2, P: 3, U: 2})
    l = Idx("l", P + U - 1)
    x2, w2, g = IndexedBase("x2"), IndexedBase("w2"), IndexedBase("g")
    b.input(x2[i, l])
    b.input(w2[u])
    b.input(g[p])  # an axis of size P, from which the emitted code reads P
    b[y[i, p]] = Sum(w2[u] * x2[i, p + u], u) + x2[i, p] ** 2 * g[p]
    b.output(y)
    report = run_check(b.build(), "float64")
    assert report.ok, str(report)


NORMS = {"groupnorm": "F.group_norm", "instancenorm": "F.instance_norm"}


@pytest.mark.parametrize("name", NORMS)
def test_norm_over_several_axes_is_compact_by_the_batchnorm_rules(root, name):
    """GroupNorm and InstanceNorm reduce over two axes jointly; the joint fact ``Sum xc = 0``
    removes the mean path's dead term, leaving layernorm's form: two reductions, both of the
    upstream, over the group's axes."""
    from symderive.algebra.simplify import derive_gradients

    program = load(root, name)
    (dx,) = [g for g in derive_gradients(program) if g.name == "x"]
    summary = dx.summary(program)
    assert summary["reductions"] == 2, dx.expr
    assert "reduction-fact" in [step.rule for step in dx.steps]
    sums = [s for s in sp.preorder_traversal(dx.expr) if isinstance(s, sp.Sum)]
    assert all(len(s.limits) == 2 for s in sums)
    assert all(s.function.has(IndexedBase("dy")) for s in sums)
    for dtype in ("float64", "float32"):
        report = run_check(program, dtype)
        assert report.ok, str(report)
    assert NORMS[name] in str(report)


T_ = symbols("T", integer=True, positive=True)
t_, s_ = Idx("t", T_), Idx("s", T_)


def masked(name, value):
    """``y[t, s] = value(a[t, s], t, s)`` over a (T, T) input ``a``, T = 5 in examples."""
    a, y = IndexedBase("a"), IndexedBase("y")
    b = Builder(name, sizes={T_: 5})
    b.input(a[t_, s_])
    b[y[t_, s_]] = value(a[t_, s_], t_, s_)
    b.output(y)
    return b


@pytest.mark.parametrize("at_zero, spelled", [(1, ">="), (0, ">")])
def test_a_step_of_the_indices_lowers_to_a_comparison_of_aranges(at_zero, spelled):
    """Heaviside(t - s, h0) over two axes is a mask: 1 where s <= t (s < t for h0 = 0), in the
    working dtype, computed by comparing aranges; every entry matches the definition."""
    program = masked("mask", lambda a, t, s: a * sp.Heaviside(t - s, at_zero)).build()
    for target in ("numpy", "torch"):
        lines = _run(derive_backward(program), {"a": np.random.rand(5, 5),
                                                "dy": np.random.rand(5, 5)}, {T_: 5}, target)
        assert any(spelled in line and ("astype(dtype)" in line or "to(dtype)" in line)
                   for line in lines), lines
    forward = "\n".join(PRINTERS["numpy"]().statement(st.name, st.code, st.accumulate)[0]
                        for st in lower(program))
    mask = np.tril(np.ones((5, 5)), 0 if at_zero else -1)
    env = {"np": np, "a": np.ones((5, 5), dtype=np.float32), "T": 5, "dtype": np.float32}
    exec(forward, env)  # noqa: S102 - the code under test
    assert env["y"].dtype == np.float32 and (env["y"] == mask).all()


def test_a_step_of_the_indices_with_half_at_zero_is_refused_with_the_fix():
    program = masked("half", lambda a, t, s: a * sp.Heaviside(t - s)).build()
    with pytest.raises(Exception, match="Heaviside\\(t - s, 1\\)"):
        lower(program)


def test_a_piecewise_on_indices_says_to_write_the_mask_as_a_step():
    b = masked("causal", lambda a, t, s: sp.Piecewise((a, s <= t), (0, True)))
    with pytest.raises(ProgramError, match="compares indices.*Heaviside\\(t - s, 1\\)"):
        b.build()


@pytest.mark.parametrize("name, reduced", [("avg_pool", ".sum(3)"), ("max_pool", ".max(3)")])
def test_pooling_with_stride_2_is_a_reshape_not_a_gather(root, name, reduced):
    """x[i, c, 2*p + u], u in range(2), reads each position once: the emitted forward reshapes
    x to (n, C, P, 2) and reduces the last axis; no index arrays are built."""
    from symderive.api import emit

    source = emit(load(root, name), "torch").source
    forward = source[source.index("def forward"):source.index("def backward")]
    assert ".reshape(n, C, P, 2)" in forward and reduced in forward, forward
    assert "arange" not in forward


@pytest.mark.parametrize("name", ["max_pool", "max_pool_overlap"])
def test_max_pooling_adjoint_adds_at_each_windows_argmax(root, name):
    """dx = Sum_p delta(argmax_u + 2*p, l)*dy: a scatter_add_ along the positions' axis at each
    window's argmax (each position of its window, checked in range), not a comparison over
    every (p, l) pair nor flat positions over the whole array; the argmax is the forward's,
    saved (``y_argmax``), not searched for again."""
    from symderive.api import emit

    source = emit(load(root, name), "torch").source
    start = source.index("def backward")
    backward = source[start:source.index("\ndef ", start + 1)]
    assert ".scatter_add_(2, (y_argmax + " in backward and "argmax(" not in backward
    assert "view(-1)" not in backward
    assert "torch.arange(2*P" not in backward, backward
