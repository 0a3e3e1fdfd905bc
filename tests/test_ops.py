"""The op table against central finite differences, one parametrised case per row."""
import math

import numpy as np
import pytest
import sympy as sp

from symderive.ops import OPS, op_for

x = sp.Symbol("x")
FUNCTIONS = [f for f in OPS if f is not sp.Pow]
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
