"""Signs: what a program establishes about the sign of its values, the side condition of the
power rules. Nothing unknown counts as non-negative."""
import pytest
import sympy as sp
from sympy import Idx, IndexedBase, Rational, Sum, cosh, exp, log, symbols, tanh

from symderive.program.load import load
from symderive.program.signs import nonnegative, program_signs

n = symbols("n", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, k = Idx("i", n), Idx("k", n)
x, y = IndexedBase("x"), IndexedBase("y")
p = IndexedBase("p", nonnegative=True)


@pytest.mark.parametrize("expr", [
    x[i]**2, exp(x[i]), cosh(x[i]), sp.Abs(x[i]), x[i]**2 + eps, (x[i]**2 + eps)**Rational(-1, 2),
    Sum(x[k]**2, k) / (n - 1), p[i], p[i]**Rational(3, 2) * exp(x[i]), sp.S(0), n - 1,
    sp.KroneckerDelta(i, k), x[i]**4 * y[i]**2])
def test_established_nonnegative(expr):
    assert nonnegative(expr)


@pytest.mark.parametrize("expr", [
    x[i], -x[i]**2, x[i]**3, tanh(x[i]), log(x[i]**2 + 1), x[i]**2 - eps, x[i] * y[i],
    Sum(x[k], k), sp.Symbol("c"), sp.S(-1), x[i]**Rational(1, 3)])
def test_unknown_signs_are_not_nonnegative(expr):
    assert not nonnegative(expr)


def test_a_name_is_nonnegative_when_its_definition_is(root):
    signs = program_signs(load(root / "derivations" / "batchnorm.py"))
    assert signs["bndiff2"] and signs["bnvar"] and signs["bnvar_inv"]
    assert not signs["hprebn"] and not signs["bndiff"] and not signs["bnraw"]
    signs = program_signs(load(root / "derivations" / "cross_entropy.py"))
    assert signs["counts"] and signs["counts_sum"] and signs["probs"]
    assert not signs["logprobs"]
