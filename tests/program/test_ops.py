"""The op table against central finite differences, one parametrised case per row."""
import math

import numpy as np
import pytest
import sympy as sp

from symderive.algebra.grad import partial
from symderive.program.ops import OPS, Piecewise, as_piecewise, op_for

x = sp.Symbol("x")
FUNCTIONS = [f for f in OPS if f not in (sp.Pow, Piecewise)]  # Piecewise: branch by branch
# two-argument rows, against a constant away from the sampled points (no tie)
APPLIED = {sp.Max: lambda a: sp.Max(a, sp.Rational(1, 7)), sp.Min: lambda a: sp.Min(a, sp.Rational(1, 7))}


def applied(function, a):
    return APPLIED.get(function, function)(a)
EXPONENTS = [-1, -2, sp.Rational(-1, 2), sp.Rational(-3, 2), 2, 3, sp.Rational(1, 2)]


def finite_difference(f, at: float, h: float = 1e-6) -> float:
    return (f(at + h) - f(at - h)) / (2 * h)


def rule_value(expr: sp.Expr, at: float) -> float:
    op = op_for(expr)
    partials = op.partials(expr, *expr.args)
    partial = next(d for d, arg in zip(partials, expr.args) if arg.has(x))  # Max(1/7, x): x's
    return float(partial.subs(x, at).evalf())


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: OPS[f].name)
def test_function_rule_matches_finite_differences(function):
    op = OPS[function]

    def f(at):
        return float(applied(function, sp.Float(at, 30)).evalf(30))

    for at in np.linspace(*op.domain, 7) + 1e-3:  # off the kinks at 0 (Abs, Heaviside, sign)
        assert math.isclose(rule_value(applied(function, x), at), finite_difference(f, at),
                            rel_tol=1e-6, abs_tol=1e-8), (op.name, at)


@pytest.mark.parametrize("exponent", EXPONENTS, ids=str)
def test_power_rule_matches_finite_differences(exponent):
    expr = x**exponent
    f = sp.lambdify(x, expr, "math")
    for at in np.linspace(*OPS[sp.Pow].domain, 7):
        assert math.isclose(rule_value(expr, at), finite_difference(f, at),
                            rel_tol=1e-6, abs_tol=1e-8), (exponent, at)


def test_every_row_has_all_spellings():
    for op in OPS.values():
        assert op.numpy and op.torch and op.latex and op.domain[0] < op.domain[1], op.name


def test_unknown_function_has_no_rule():
    assert op_for(sp.gamma(x)) is None


def test_kinks_follow_torch():
    """relu'(0) = 0; a tie between two arrays splits 0.5/0.5 as torch.maximum; abs'(0) = 0."""
    import torch
    a, b = sp.IndexedBase("a")[x], sp.IndexedBase("b")[x]
    relu = sp.Max(a, 0)
    assert [p.subs(a, 0) for p in op_for(relu).partials(relu, *relu.args)] == [0, 0]
    both = sp.Max(a, b)
    assert [p.subs({a: 1, b: 1}) for p in op_for(both).partials(both, *both.args)] == [
        sp.S.Half, sp.S.Half]
    left = torch.tensor(1.0, requires_grad=True)
    right = torch.tensor(1.0, requires_grad=True)
    torch.maximum(left, right).backward()
    assert left.grad.item() == right.grad.item() == 0.5
    zero = torch.tensor(0.0, requires_grad=True)
    torch.relu(zero).backward()
    assert zero.grad.item() == 0.0
    assert sp.sign(0) == 0


# -- Piecewise: the derivative branch by branch ---------------------------------------------------
n = sp.Symbol("n", integer=True, positive=True)
i, k = sp.Idx("i", n), sp.Idx("k", n)
X = sp.IndexedBase("x")[i]
PIECEWISE = {  # as a derivation writes them, and their derivative in x[i]
    "leaky": (sp.Piecewise((X, X > 0), (X / 10, True)), lambda v: 1.0 if v > 0 else 0.1),
    "hardtanh": (sp.Piecewise((-1, X <= -1), (1, X >= 1), (X, True)),
                 lambda v: 0.0 if abs(v) >= 1 else 1.0),
    "huber": (sp.Piecewise((X**2 / 2, sp.Abs(X) <= 1), (sp.Abs(X) - sp.S.Half, True)),
              lambda v: v if abs(v) <= 1 else math.copysign(1.0, v)),
    "band": (sp.Piecewise((sp.exp(X), (X > -1) & (X < 1)), (sp.tanh(X), True)),
             lambda v: math.exp(v) if -1 < v < 1 else 1 - math.tanh(v)**2),
}


@pytest.mark.parametrize("name", sorted(PIECEWISE))
def test_piecewise_rule_matches_finite_differences(name):
    """Off the boundaries, the branch-by-branch derivative is the derivative; the index delta
    stands outside the Piecewise, where the rules contract it."""
    written, expected = PIECEWISE[name]
    expr = as_piecewise(written)
    d = partial(expr, "x", (k,))
    (outer,) = [f for f in d.args if isinstance(f, Piecewise)]
    assert d == outer * sp.KroneckerDelta(i, k) and not outer.has(sp.KroneckerDelta)
    v = sp.Symbol("v")
    f = sp.lambdify(v, written.xreplace({X: v}), "math")
    for at in np.linspace(-2.5, 2.5, 11) + 1e-3:
        rule = float(sp.Piecewise(*outer.args).subs(X, sp.Float(at)))
        assert math.isclose(rule, finite_difference(f, at), rel_tol=1e-6, abs_tol=1e-8), at
        assert math.isclose(rule, expected(at), rel_tol=1e-12, abs_tol=1e-12), at


def test_piecewise_kinks_are_the_selected_branch():
    """At a boundary the derivative is the branch the conditions select there: relu written as
    Piecewise((x, x > 0), (0, True)) has torch's 0 at 0; with x >= 0 it would have 1."""
    strict = as_piecewise(sp.Piecewise((X, X > 0), (0, True)))
    loose = as_piecewise(sp.Piecewise((X, X >= 0), (0, True)))
    for expr, at_zero in ((strict, 0), (loose, 1)):
        (outer,) = [f for f in partial(expr, "x", (i,)).args if isinstance(f, Piecewise)] or [
            partial(expr, "x", (i,))]
        assert sp.Piecewise(*outer.args).subs(X, 0) == at_zero


def test_piecewise_of_a_sum_differentiates_inside_the_branch():
    """A read under a Sum inside a branch is differentiated there (no outer delta to pull)."""
    m = sp.Idx("m", n)
    s = sp.Sum(sp.IndexedBase("x")[m] ** 2, m)
    expr = as_piecewise(sp.Piecewise((s, X > 0), (0, True)))
    d = partial(expr, "x", (k,))
    assert isinstance(d, Piecewise) and d.args[0].args[0].has(sp.KroneckerDelta)


def test_piecewise_is_kept_whole_under_a_sum():
    """SymPy's Sum folds a sympy Piecewise around its summand; symderive's stays a factor."""
    p = as_piecewise(sp.Piecewise((1, X > 0), (2, True)))
    summed = sp.Sum(p * sp.KroneckerDelta(i, k) * X, i)
    assert isinstance(summed.function, sp.Mul) and p in summed.function.args
    assert Piecewise((1, X > 0), (1, True)) == 1  # one value: that value
    assert isinstance(Piecewise((1, X > 0)), Piecewise)  # no value where x <= 0: not collapsed


def test_a_piecewise_drops_decided_branches():
    """A substitution can decide a condition (a read through a map turned ``a <= -1`` into
    ``2*Abs(t) <= -1``, False): a branch that never holds goes and the first that always holds
    ends the Piecewise, so every condition left compares a value (found by the long fuzz: the
    printer met a bare False)."""
    decided = Piecewise((-1, sp.false), (1, X >= 1), (X, True))
    assert decided == Piecewise((1, X >= 1), (X, True))
    assert Piecewise((2, X > 0), (3, sp.true), (4, True)) == Piecewise((2, X > 0), (3, True))
    assert Piecewise((5, sp.false), (6, sp.true)) == 6
