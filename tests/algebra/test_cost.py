"""The remembered cost and printed keys: ``operation_count`` is SymPy's ``count_ops`` number on
every form (hand-picked corners and seeded random expressions), and the caches empty with SymPy's
own ``clear_cache``, so a benchmark that clears SymPy's cache measures a cold derivation."""
import random

import pytest
import sympy as sp
from sympy.core.cache import clear_cache

from symderive.algebra.cost import operation_count, printed
from symderive.algebra.simplify import derive_gradients
from symderive.program.ir import free_indices
from symderive.program.load import load

x, y, z, n, d = sp.symbols("x y z n d")
i = sp.Idx("i", n)
a = sp.IndexedBase("a")

CORNERS = [
    1 / (x * y * z), -x / y, sp.Rational(-1, 3), x - y, -x - y, -x + y, sp.exp(x), sp.E,
    sp.exp(-x) / y, 2 * x / (3 * y), -2 / x, x**-2, (x + y)**-1, -(x + y) / 2,
    sp.Sum(a[i] * x, (i, 0, n - 1)), sp.Max(x, y, 0), sp.Piecewise((x, x > 0), (-y, True)),
    sp.tanh(x)**2 - 1, 1 - sp.tanh(x)**2, sp.Float(0.044715) * x**3, x**(-n), sp.sqrt(x) / 2,
    sp.KroneckerDelta(i, n - 1) * a[i], sp.Integer(0), sp.S.One, sp.Integer(-1),
]


def _random(depth, rng):
    leaves = [x, y, n, a[i], sp.Integer(2), sp.Rational(1, 3), sp.Rational(-2, 5),
              sp.Float(0.5), sp.Integer(-1), sp.E]
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(leaves)
    u, v = _random(depth - 1, rng), _random(depth - 1, rng)
    return rng.choice([u + v, u - v, u * v, u / v, -u, u**2, u**-1, u**sp.Rational(-3, 2),
                       sp.exp(u), sp.tanh(u), sp.Sum(u * a[i], (i, 0, n - 1)),
                       sp.Piecewise((u, x > 0), (v, True))])


@pytest.mark.parametrize("expr", CORNERS, ids=str)
def test_operation_count_is_count_ops_on_the_corners(expr):
    assert operation_count(expr) == int(sp.count_ops(expr))


def test_operation_count_is_count_ops_on_random_expressions():
    rng = random.Random(11)
    for _ in range(300):
        expr = _random(4, rng)
        assert operation_count(expr) == int(sp.count_ops(expr)), expr


def test_operation_count_is_count_ops_on_every_form_of_a_derivation(root):
    program = load(root / "derivations" / "batchnorm.py")
    for gradient in derive_gradients(program):
        for step in gradient.steps:
            for form in (step.before, step.after):
                for sub in sp.preorder_traversal(form):
                    if isinstance(sub, sp.Expr):
                        assert operation_count(sub) == int(sp.count_ops(sub)), sub


def test_printed_is_str_and_keeps_python_numbers_apart():
    assert printed(a[i] * x) == str(a[i] * x)
    assert (printed(2), printed(2.0), printed(True)) == ("2", "2.0", "True")


def test_the_caches_empty_with_sympys():
    expr = sp.tanh(a[i]) * y
    operation_count(expr), free_indices(expr), printed(expr)
    caches = [operation_count.__globals__["_node_count"], printed]
    assert all(cache.cache_info().currsize for cache in caches)
    clear_cache()
    assert not any(cache.cache_info().currsize for cache in caches)
