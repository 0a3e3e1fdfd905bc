"""The op table against central finite differences, one parametrised case per row."""
import math

import numpy as np
import pytest
import sympy as sp

from symderive.ops import OPS, op_for

x = sp.Symbol("x")
FUNCTIONS = [f for f in OPS if f is not sp.Pow]
EXPONENTS = [-1, -2, sp.Rational(-1, 2), sp.Rational(-3, 2), 2, 3, sp.Rational(1, 2)]


def finite_difference(f, at: float, h: float = 1e-6) -> float:
    return (f(at + h) - f(at - h)) / (2 * h)


def rule_value(expr: sp.Expr, at: float) -> float:
    op = op_for(expr)
    (partial, *_) = op.partials(expr, *expr.args)
    return float(partial.subs(x, at).evalf())


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: OPS[f].name)
def test_function_rule_matches_finite_differences(function):
    op = OPS[function]
    f = sp.lambdify(x, function(x), "math")
    for at in np.linspace(*op.domain, 7):
        assert math.isclose(rule_value(function(x), at), finite_difference(f, at),
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
    assert op_for(sp.erf(x)) is None
