"""Soundness: every rewrite step the simplifier records, replayed at random points that include
negative values and values near zero (not only the derivation's example values), never changes a
value where the expression before it is defined; and the programs that unsound rewrites, a wrong
lowering or a bad constant broadcast once got wrong now pass ``check``."""
from dataclasses import replace
from pathlib import Path

import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, note, settings
from sympy import Idx, IndexedBase, KroneckerDelta, Rational, Sum, exp, log, symbols
from sympy.concrete.expr_with_limits import ExprWithLimits

from symderive import Builder, normal
from symderive.algebra.simplify import compact_gradients
from symderive.algebra.stabilize import forward_rewrites
from symderive.program.ir import free_indices
from symderive.program.load import load
from symderive.verify.check import run_check
from symderive.verify.oracle import evaluate, evaluate_expression

from ..test_properties import programs

# An atomic derivation (adjoints="all") records no rewrite steps: its chain is what check tests.
DERIVATIONS = sorted(p.stem for p in (Path(__file__).parent.parent.parent / "derivations").glob("*.py")
                     if 'adjoints="all"' not in p.read_text())


def random_point(program, generator) -> dict:
    """Inputs anywhere on the real line: wide normals, with a third of the entries near zero
    and a few negative ones, whatever domain the derivation declares for its examples."""
    sizes = program.example_sizes()
    values = {}
    for x in program.inputs:
        shape = [int(sp.sympify(s).subs(sizes)) for s in program.shape(x.name)] \
            if x.indices else []
        if x.integer:
            classes = int(sp.sympify(x.classes).subs(sizes))
            values[x.name] = torch.randint(0, classes, shape, generator=generator)
            continue
        value = 3 * torch.randn(shape, generator=generator, dtype=torch.float64)
        near_zero = torch.rand(shape, generator=generator) < 1 / 3
        tiny = 1e-3 * torch.randn(shape, generator=generator, dtype=torch.float64)
        values[x.name] = torch.where(near_zero, tiny, value)
    return values


def magnitude(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every sum of terms made a sum of their magnitudes: what its rounding error is
    proportional to (a distributed ``a/w**2 - a*t**2/w**2`` at ``t = 1`` cancels terms of size
    ``1/w**2`` to 0, exact only up to that size times the unit roundoff)."""
    if isinstance(expr, (sp.Indexed, sp.Idx, ExprWithLimits)) and not isinstance(expr, sp.Sum) \
            or not expr.args:
        return expr  # an index stays what it is; a maximum is its own magnitude
    if isinstance(expr, sp.Sum):
        return sp.Sum(magnitude(expr.function), *[limit[0] if isinstance(limit[0], sp.Idx)
                                                  else limit for limit in expr.limits])
    args = [magnitude(a) for a in expr.args]
    if isinstance(expr, sp.Add):
        return sp.Add(*[sp.Abs(a, evaluate=False) for a in args])
    return expr.func(*args)


def replay(program, gradient, point: dict, upstream: dict) -> list[str]:
    """The steps of ``gradient`` that change a defined value at ``point`` by more than rounding:
    relative to the value's scale and to the size of the terms either form adds up. The
    gradient's value joins ``upstream`` for the gradients that read it."""
    arrays = evaluate(program, point) | upstream
    scalars = dict(program.sizes) | dict(program.constants)
    axes = [k for k in gradient.lhs.indices] if isinstance(gradient.lhs, sp.Indexed) else []
    wrong = []
    for step in gradient.steps:
        if step.rule == "inline":  # a substitution of adjoints, not a rewrite of values
            continue
        assert set(free_indices(step.after)) <= set(axes), step
        before = evaluate_expression(step.before, axes, arrays, scalars)
        after = evaluate_expression(step.after, axes, arrays, scalars)
        defined = before.isfinite()
        scale = before[defined].abs().max().item() if defined.any() else 0.0
        terms = torch.maximum(
            *(evaluate_expression(magnitude(e), axes, arrays, scalars).abs().nan_to_num(0.0, 0.0, 0.0)
              for e in (step.before, step.after)))
        close = (after - before).abs() <= 1e-9 * (1 + scale) + 1e-11 * terms
        if not bool((close | ~defined).all()):
            wrong.append(f"{step.rule}: {step.before} -> {step.after}")
    # a materialised intermediate adjoint (attention's dP) is read by the gradients after it
    upstream[str(gradient.lhs.base) if isinstance(gradient.lhs, sp.Indexed) else
             str(gradient.lhs)] = evaluate_expression(gradient.expr, axes, arrays, scalars)
    return wrong


def upstream_at(program, generator) -> dict:
    """Random adjoints for the outputs and for every materialised layer boundary: a rewrite
    must hold whatever they are."""
    sizes = program.example_sizes()
    names = [] if program.loss else list(program.outputs)
    names += [] if isinstance(program.adjoints, str) else list(program.adjoints)
    return {f"d{name}": torch.randn([int(sp.sympify(s).subs(sizes)) for s in program.shape(name)],
                                    generator=generator, dtype=torch.float64)
            for name in names}


@pytest.mark.parametrize("name", DERIVATIONS)
def test_every_recorded_step_holds_at_random_points(root, name):
    program = load(root / "derivations" / f"{name}.py")
    gradients = compact_gradients(program)
    assert sum(len(g.steps) for g in gradients) > 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        point, upstream = random_point(program, generator), upstream_at(program, generator)
        for gradient in gradients:
            assert replay(program, gradient, point, upstream) == [], gradient.name


EXAMPLES = sorted(f"{p.parent.name}/{p.stem}" for folder in ("layers", "activations")
                  for p in (Path(__file__).parent.parent.parent / "examples" / folder).glob("*.py")
                  if p.stem != "table")


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_step_of_the_examples_holds_at_random_points(root, name):
    """The same replay over the example layers and activations (where the output-form rules,
    gather, clipped steps, signs, common denominators, do most of their work)."""
    program = load(root / "examples" / f"{name}.py")
    gradients = compact_gradients(program)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        point, upstream = random_point(program, generator), upstream_at(program, generator)
        for gradient in gradients:
            assert replay(program, gradient, point, upstream) == [], gradient.name


def replay_forward(program, point: dict) -> list[str]:
    """The forward rewrites (stable functions recognised at build time, stabilising rewrites
    before lowering) that change a defined value at ``point``. The oracle evaluates the program
    as built, after recognition, so only this replay compares a recognition with what was
    written."""
    arrays = evaluate(program, point)
    scalars = dict(program.sizes) | dict(program.constants)
    wrong = []
    for name, rule, before, after, _ in forward_rewrites(program):
        lhs = program.lhs(name)
        axes = list(lhs.indices) if isinstance(lhs, sp.Indexed) else []
        old = evaluate_expression(before, axes, arrays, scalars)
        new = evaluate_expression(after, axes, arrays, scalars)
        defined = old.isfinite()
        scale = old[defined].abs().max().item() if defined.any() else 0.0
        if not bool((((new - old).abs() <= 1e-9 * (1 + scale)) | ~defined).all()):
            wrong.append(f"{rule}: {before} -> {after}")
    return wrong


def _written_out():
    """Sigmoid, its ratio form, softplus and log-sigmoid written by hand, of a shifted input."""
    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    x, y = IndexedBase("x"), IndexedBase("y")
    layer = Builder("written_out", sizes={n: 6})
    layer.input(x[i], normal(3.0))
    u = 2 * x[i] - 1
    layer[y[i]] = u / (1 + exp(-u)) + exp(u) / (1 + exp(u)) + log(1 + exp(u)) - log(1 + exp(-u))
    layer.output(y)
    return layer.build()


@pytest.mark.parametrize("source", ["cross_entropy", "makemore_mlp_layers", "written out"])
def test_every_forward_rewrite_holds_at_random_points(root, source):
    program = _written_out() if source == "written out" else \
        load(root / "derivations" / f"{source}.py")
    assert forward_rewrites(program), "nothing to replay"
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert replay_forward(program, random_point(program, generator)) == []


def test_forward_replay_catches_an_unsound_rewrite():
    program = _written_out()
    (first, *_) = program.rewrites
    bad = replace(program, rewrites=(replace(first, after=2 * first.after),))
    generator = torch.Generator().manual_seed(0)
    assert replay_forward(bad, random_point(bad, generator))


def test_replay_catches_an_unsound_rewrite(root):
    """The replay is not vacuous: a step that drops an absolute value is caught."""
    program = _power(lambda x: sp.sqrt(x**2), lambda x: x.abs())
    (gradient,) = compact_gradients(program)
    x = IndexedBase("x")[Idx("i", symbols("n", integer=True, positive=True))]
    from symderive.algebra.simplify import Step
    bad = type(gradient)(gradient.name, gradient.lhs, gradient.expr,
                         (Step("unsound", sp.sqrt(x**2), x),))
    generator = torch.Generator().manual_seed(0)
    assert replay(program, bad, random_point(program, generator), {"dy": torch.ones(5)})


def _power(forward, reference):
    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    x, y = IndexedBase("x"), IndexedBase("y")
    b = Builder("power", sizes={n: 5})
    b.input(x[i], normal(1.0))
    b[y[i]] = forward(x[i])
    b.output(y)
    b.reference("|x| by torch", reference)
    return b.build()


@pytest.mark.parametrize("forward, reference", [
    (lambda x: (x**2) ** Rational(3, 2), lambda x: x.abs() ** 3),
    (lambda x: sp.sqrt(x**2), lambda x: x.abs()),
], ids=["(x**2)**(3/2)", "sqrt(x**2)"])
@pytest.mark.parametrize("adjoints", ["inputs", "all"])
def test_powers_of_powers_pass_check_on_negative_inputs(forward, reference, adjoints):
    program = _power(forward, reference)
    program = type(program)(**{**program.__dict__, "adjoints": adjoints})
    report = run_check(program, "float64", seed=0)
    assert report.ok, [r for r in report.rows + report.forward if not r.approximate]


def _embedding_sum_loss():
    n, d, V = symbols("n d V", integer=True, positive=True)
    i, j, v = Idx("i", n), Idx("j", d), Idx("v", V)
    T, Y, e = IndexedBase("T"), IndexedBase("Y"), IndexedBase("e")
    loss = symbols("L")
    b = Builder("embedding_sum", sizes={n: 4, d: 3, V: 5})
    b.input(T[v, j])
    b.labels(Y[i], V)
    b[e[i, j]] = T[Y[i], j]
    b[loss] = Sum(Sum(e[i, j], j), i)  # a constant adjoint scattered into T
    b.loss(loss)
    return b.build()


def _unused_sum_index():
    n, d = symbols("n d", integer=True, positive=True)
    i, j, k = Idx("i", n), Idx("j", d), Idx("k", n)
    h, y = IndexedBase("h"), IndexedBase("y")
    b = Builder("unused_index", sizes={n: 4, d: 3})
    b.input(h[i, j])
    b[y[i, j]] = Sum(h[i, j], k) + Sum(exp(h[i, j]) * KroneckerDelta(i, i), k)
    b.output(y)
    return b.build()


@pytest.mark.parametrize("build", [_embedding_sum_loss, _unused_sum_index])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constant_adjoints_and_unused_sum_indices_pass_check(build, dtype):
    report = run_check(build(), dtype, seed=1)
    assert {row.target for row in report.rows} >= {"torch", "numpy"}
    assert report.ok, [r for r in report.rows + report.forward if not r.approximate]


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_every_step_of_the_fuzz_corpus_holds_at_random_points(draft):
    """The same replay over the fuzzer's random programs (every op, index form and layer shape
    of tests/test_properties.py), each at two random points."""
    note(draft.source(draft.adjoints))
    program = draft.build(draft.adjoints)
    generator = torch.Generator().manual_seed(0)
    gradients = compact_gradients(program)
    for _ in range(2):
        point, upstream = random_point(program, generator), upstream_at(program, generator)
        for gradient in gradients:
            assert replay(program, gradient, point, upstream) == [], gradient.name
