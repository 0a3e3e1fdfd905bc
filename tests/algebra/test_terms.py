"""The term normal form: distribution, collection, and the side condition of the one identity
``expand`` applies on its own, ``(a**b)**c -> a**(b*c)`` (c an integer, or a >= 0 established)."""
import numpy as np
import pytest
import sympy as sp
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive.algebra.terms import collect, delta, expand, readable, renamed, to_expr
from symderive.program.signs import nonnegative

n = symbols("n", integer=True, positive=True)
i, k = Idx("i", n), Idx("k", n)
x, y = IndexedBase("x"), IndexedBase("y")
p = IndexedBase("p", nonnegative=True)


@pytest.mark.parametrize("expr", [(x[i]**2)**Rational(3, 2), sp.sqrt(x[i]**2),
                                  (x[i]**4)**Rational(1, 4), (x[i]**2)**sp.Float(0.5)])
def test_a_fractional_power_of_a_power_of_unknown_sign_stays_one_factor(expr):
    (term,) = expand(expr)
    assert len(term.factors) == 1 and term.factors[0][0] != x[i]
    value = sp.lambdify(x[i], to_expr([term]))
    assert np.isclose(value(-1.7), sp.lambdify(x[i], expr)(-1.7))  # |x|**3, not x**3


@pytest.mark.parametrize("expr, exponent", [
    ((x[i]**2)**3, 6), ((x[i]**Rational(1, 2))**-2, -1), ((p[i]**2)**Rational(1, 2), 1),
    ((sp.cosh(x[i])**2)**Rational(1, 2), 1), ((x[i]**2)**n, 2 * n)])
def test_a_power_of_a_power_combines_under_its_side_condition(expr, exponent):
    (term,) = expand(expr, nonnegative)
    assert len(term.factors) == 1 and term.factors[0][1] == exponent


def test_products_of_sums_distribute_and_collect():
    (term,) = collect(expand(x[i] * (y[i] + Sum(y[k], k)) - x[i] * y[i]))
    (index,) = term.bound
    assert term.coeff == 1 and set(term.factors) == {(x[i], 1), (y[index], 1)}


def test_readable_names_bound_indices_and_evaluates_what_it_rebuilds():
    """A subtree with nothing to name is rebuilt from a cache; it must come back as the plain
    rebuild does, unevaluated parts evaluated (``(2*x + 3)/6 -> x/3 + 1/2``)."""
    def names(size):
        yield from ("k", "m")
    unevaluated = sp.Mul(Rational(1, 6), 2 * x[i] + 3, evaluate=False)
    for _ in range(2):  # the second time from the cache
        assert readable(unevaluated, names) == x[i] / 3 + Rational(1, 2)
    bound, named = Idx("_b0", n), Idx("k", n)
    shown = readable(sp.Mul(Sum(x[bound], bound), unevaluated, evaluate=False), names)
    assert shown == Sum(x[named], named) * (x[i] / 3 + Rational(1, 2))


def test_delta_and_renamed_build_what_sympy_builds():
    """The fast delta skips SymPy's evaluation only where it decides nothing: the same object,
    in SymPy's canonical order, for any pair of indices; and renaming rebuilds deltas alike."""
    m = symbols("m", integer=True, positive=True)
    j, b, a, c = Idx("j", n), Idx("_b", n), Idx("_10", n), Idx("_9", m)
    Y = IndexedBase("Y")
    pairs = [(i, k), (k, i), (i, i), (a, c), (c, a), (b, i), (i, Y[k]), (i, k + 1), (j, 2)]
    for first, second in pairs:
        ours = delta(first, second)
        assert ours == sp.KroneckerDelta(first, second)
        assert ours.args == sp.KroneckerDelta(first, second).args
    expr = Sum(x[k] * sp.KroneckerDelta(i, k) * sp.KroneckerDelta(k, j) * y[j], k) \
        + sp.KroneckerDelta(j, a)
    for mapping in ({k: c}, {k: i}, {j: a}, {k: Y[i], j: b}, {}):
        assert renamed(expr, mapping) == expr.xreplace(mapping)
