"""The double backward: a derivation's gradients as a program of its inputs and upstream adjoints,
differentiated again by the same machinery, checked against the independent oracle; and the
refusals that keep a Function once differentiable instead of guessing."""
import os
from dataclasses import replace

import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, note, settings
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, ProgramError, normal
from symderive.algebra.double import derive_double, gradient_program
from symderive.algebra.simplify import derive_backward
from symderive.codegen.emit import module_source
from symderive.program.load import load
from symderive.verify import oracle
from symderive.verify.check import example_inputs, load_module, run_check

from ..test_properties import KINK_PRODUCTIONS, programs


def small(program, size=4):
    return replace(program, sizes=tuple((s, min(v, size)) for s, v in program.sizes))


def test_the_gradient_program_of_batchnorm(root):
    program = load(root / "derivations" / "batchnorm.py")
    gradients, upstream = gradient_program(program, derive_backward(program))
    assert upstream == {"dhpreact": "grad_hpreact"}
    assert [x.name for x in gradients.inputs] == ["hprebn", "bngain", "bnbias", "grad_hpreact"]
    assert gradients.outputs == ("grad_bngain", "grad_bnbias", "grad_hprebn")
    names = [s.name for s in gradients.body]
    assert "hpreact" not in names  # the layer's output is not read by its gradients
    assert names[-3:] == ["grad_bngain", "grad_bnbias", "grad_hprebn"]


def test_a_loss_gradient_program_drops_the_loss_and_reads_no_upstream(root):
    program = load(root / "derivations" / "cross_entropy.py")
    gradients, upstream = gradient_program(program, derive_backward(program))
    assert upstream == {} and gradients.outputs == ("grad_logits",)
    assert not {"loss", "logprobs"} & {s.name for s in gradients.body}
    assert [x.name for x in gradients.inputs] == ["logits", "Y"]  # labels stay non-differentiable


def test_an_index_the_forward_uses_for_another_range_is_renamed(root):
    """The batchnorm backward binds k over n; the MLP's k ranges over B*E: one program must not
    hold two indices that print alike, so the backward's is renamed."""
    program = load(root / "derivations" / "makemore_mlp_layers.py")
    gradients, _ = gradient_program(program, derive_backward(program))
    indices = {str(k): k.upper - k.lower + 1 for s in gradients.body
               for k in s.lhs.atoms(sp.Idx) | s.rhs.atoms(sp.Idx)}
    assert "k2" in indices and indices["k2"] != indices["k"]


def test_the_derived_double_backward_of_batchnorm_passes_check(root):
    """The gradient program's compact backward against autograd through the oracle, which shares
    nothing with the simplifier, and against finite differences."""
    program = load(root / "derivations" / "batchnorm.py")
    double = derive_double(program, derive_backward(program))
    assert not isinstance(double, str), double
    report = run_check(small(double.program), "float64")
    assert report.ok, report.table()


def test_double_backward_through_a_normalised_square_sum():
    """A reduction over the batch axis of a normalised value times an upstream: the shape of
    batchnorm's gradient that a sound simplifier must get right (a pinned regression)."""
    n, H = symbols("n H", integer=True, positive=True)
    eps = symbols("eps", positive=True)
    i, j, k = Idx("i", n), Idx("j", H), Idx("k", n)
    x, gy, mu, d, d2, v, r, raw, out = symbols("x gy mu d d2 v r raw out", cls=IndexedBase)
    b = Builder("normalised", sizes={n: 4, H: 3}, constants={eps: 1e-5})
    b.input(x[i, j], normal(1.0))
    b.input(gy[i, j], normal(1.0))
    b[mu[j]] = Sum(x[i, j], i) / n
    b[d[i, j]] = x[i, j] - mu[j]
    b[d2[i, j]] = d[i, j] ** 2
    b[v[j]] = Sum(d2[i, j], i) / (n - 1)
    b[r[j]] = (v[j] + eps) ** Rational(-1, 2)
    b[raw[i, j]] = d[i, j] * r[j]
    b[out[i, j]] = raw[i, j] * Sum(raw[k, j] * gy[k, j], k)
    b.output(out)
    report = run_check(b.build(), "float64")
    assert report.ok, report.table()


def test_adjoints_all_is_refused_with_a_reason(makemore):
    reason = derive_double(makemore, derive_backward(makemore))
    assert isinstance(reason, str) and "adjoints='all'" in reason


def test_a_forward_name_like_a_first_order_adjoint_is_refused():
    """Validation refuses it (symderive.program.names.derived_names), so gradient_program's own guard
    is never reached by a built program."""
    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    x, grad_x, y = symbols("x grad_x y", cls=IndexedBase)
    b = Builder("clash", sizes={n: 3})
    b.input(x[i], normal(1.0))
    b[grad_x[i]] = 2 * x[i]
    b[y[i]] = grad_x[i] * x[i]
    b.output(y)
    with pytest.raises(ProgramError, match="grad_x is an array whose name clashes with the "
                       "gradient of 'x' in the double backward; rename it"):
        b.build()


def _second_derivatives(function, leaves, seed=0):
    """First derivatives taken with ``create_graph`` (the derived ``gradients``) and the
    derivatives of a random combination of them (the derived double backward), both for random
    upstream adjoints; ``None`` where a leaf is not reached."""
    generator = torch.Generator().manual_seed(seed)
    floats = [x for x in leaves if x.requires_grad]
    outputs = function(*leaves)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = sum((y * torch.randn(y.shape, generator=generator, dtype=y.dtype)).sum()
                for y in outputs)
    first = torch.autograd.grad(total, floats, create_graph=True, allow_unused=True)
    directions = [torch.randn(x.shape, generator=generator, dtype=x.dtype) for x in floats]
    reached = [(g * v).sum() for g, v in zip(first, directions) if g is not None and g.requires_grad]
    second = torch.autograd.grad(sum(reached), floats, allow_unused=True) if reached else \
        (None,) * len(floats)
    return [g.detach() if g is not None else None for g in first + tuple(second)]


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_statements=3))
def test_random_programs_are_twice_differentiable_or_say_why(draft):
    """Random fuzz programs: where the double backward is derived, gradgradcheck passes and the
    first and second derivatives equal autograd's twice through the independent oracle; where it
    is not, the Function is once differentiable and says why."""
    note(draft.source(draft.adjoints))
    program = draft.build(draft.adjoints)
    source = module_source(program, derive_backward(program), "torch")
    module = load_module(source, "fuzz_twice")
    if not hasattr(module, "double_backward"):
        assert "@once_differentiable  # refused: " in source
        return
    inputs = example_inputs(program, torch.float64, seed=0)
    leaves = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs.values()]
    entry = getattr(module, program.name)
    assert torch.autograd.gradgradcheck(entry, leaves)

    def through_the_oracle(*values):
        computed = oracle.evaluate(program, dict(zip(inputs, values)))
        return tuple(computed[name] for name in program.outputs)

    ours = _second_derivatives(entry, leaves)
    for got, expected in zip(ours, _second_derivatives(through_the_oracle, leaves)):
        if got is None or expected is None:  # a leaf one side does not reach: ~zero on the other
            assert all(value is None or value.abs().max() <= 1e-9 for value in (got, expected))
            continue
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9 * float(
            expected.abs().max().clamp(min=1)))


def test_an_output_read_later_gets_a_double_backward():
    """``a1`` is an output and feeds ``a2``: its upstream adjoint gains a term in the backward
    (``da1 = ... + da1``). The gradient program keeps the upstream as an input and names the sum
    anew, so the double backward is derived (it was refused) and equals the oracle's."""
    n, d = symbols("n d", integer=True, positive=True)
    i, j, m = Idx("i", n), Idx("j", d), Idx("m", d)
    x, M, a0, a1, a2, a3, a4 = symbols("x M a0 a1 a2 a3 a4", cls=IndexedBase)
    b = Builder("reread", sizes={n: 4, d: 3})
    b.input(x[i, j], normal(1.0))
    b.input(M[m, j], normal(0.5))
    b[a0[i, j]] = x[i, j] ** 2
    b[a1[i, j]] = sp.tanh(a0[i, j])
    b[a2[i, j]] = sp.tanh(2 * sp.tanh(a1[i, j]))
    b[a3[i, j]] = sp.exp(2 * sp.tanh(a2[i, j]))
    b[a4[i, j]] = Sum(a3[i, m] * M[m, j], m)
    b.output(a4, a1, a2)  # a1 and a2 are outputs read later
    program = b.build()
    gradients, _ = gradient_program(program, derive_backward(program))
    assert "grad_a1" in [x.name for x in gradients.inputs] and "grad_a1_2" in gradients.names
    module = load_module(module_source(program, derive_backward(program), "torch"), "reread")
    assert hasattr(module, "double_backward")
    inputs = example_inputs(program, torch.float64, seed=0)
    leaves = [x.clone().requires_grad_() for x in inputs.values()]
    assert torch.autograd.gradgradcheck(module.reread, leaves)

    def through_the_oracle(*values):
        computed = oracle.evaluate(program, dict(zip(inputs, values)))
        return tuple(computed[name] for name in program.outputs)

    for got, expected in zip(_second_derivatives(module.reread, leaves),
                             _second_derivatives(through_the_oracle, leaves)):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


# The values an outside fuzzer put its kinks on: every kink the grammar writes (at 0, 1, -1, a
# tie of two inputs) is hit exactly by some element.
KINK_GRID = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def _on_the_grid(program, inputs: dict, seed: int = 0) -> dict:
    """The example inputs with every float element drawn from ``KINK_GRID`` (within the input's
    declared uniform range, so a positive input stays positive)."""
    generator = torch.Generator().manual_seed(seed)
    placed = {}
    for x in program.inputs:
        value = inputs[x.name]
        if x.integer:
            placed[x.name] = value
            continue
        grid = [g for g in KINK_GRID if x.init.kind != "uniform" or x.init.low <= g <= x.init.high]
        picks = torch.randint(len(grid), value.shape, generator=generator)
        placed[x.name] = torch.tensor(grid, dtype=value.dtype)[picks]
    return placed


LONG = os.environ.get("SYMDERIVE_FUZZ") == "long"  # the long fuzz profile: many random ones


@settings(max_examples=450 if LONG else 30, deadline=None, derandomize=not LONG,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(programs(max_statements=3, productions=tuple(KINK_PRODUCTIONS)))
def test_kinks_on_the_grid_match_the_oracle_to_second_order(draft):
    """Programs with kinks, every input on a grid of kink values, so that relu, clips, ties and
    Piecewise boundaries are hit exactly: the emitted backward, the gradients under
    create_graph and the derived double backward agree with autograd through the oracle, whose
    Max/Min/Piecewise follow the same stated conventions (a tie with a constant: Max takes the
    constant, Min the value; two values split; a Piecewise the branch its conditions select)."""
    note(draft.source(draft.adjoints))
    program = draft.build(draft.adjoints)
    source = module_source(program, derive_backward(program), "torch")
    module = load_module(source, "fuzz_kinks")
    inputs = _on_the_grid(program, example_inputs(program, torch.float64, seed=0))
    leaves = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs.values()]
    entry = getattr(module, program.name)

    def through_the_oracle(*values):
        computed = oracle.evaluate(program, dict(zip(inputs, values)))
        return tuple(computed[name] for name in program.outputs)

    expected = _second_derivatives(through_the_oracle, leaves)
    floats = [x for x in leaves if x.requires_grad]
    generator = torch.Generator().manual_seed(0)
    outputs = entry(*leaves)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = sum((y * torch.randn(y.shape, generator=generator, dtype=y.dtype)).sum()
                for y in outputs)
    plain = torch.autograd.grad(total, floats, allow_unused=True)  # backward(), no graph
    got = _second_derivatives(entry, leaves) if hasattr(module, "double_backward") else \
        list(plain) + [None] * len(floats)
    if not hasattr(module, "double_backward"):
        assert "@once_differentiable  # refused: " in source
        expected = expected[:len(floats)] + [None] * len(floats)
    for position, (ours, theirs) in enumerate(zip(list(plain) + got, expected[:len(floats)]
                                                  + expected)):
        if ours is None or theirs is None:
            assert all(value is None or value.abs().max() <= 1e-9 for value in (ours, theirs))
            continue
        torch.testing.assert_close(ours.detach(), theirs, rtol=1e-9, atol=1e-9 * float(
            theirs.abs().max().clamp(min=1)), msg=lambda m: f"derivative {position}: {m}")
