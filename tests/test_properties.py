"""Property tests: random small programs from a grammar of the supported ops; their derived
gradients, atomic and simplified, must match torch autograd in float64."""
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy import Idx, IndexedBase, Sum, exp, log, symbols, tanh

from symderive import Builder, Maximum, normal, uniform
from symderive.check import run_check

n, d = symbols("n d", integer=True, positive=True)
i, j, k = Idx("i", n), Idx("j", d), Idx("k", n)
x, w, b = IndexedBase("x"), IndexedBase("w"), IndexedBase("b")

# Each production maps the previous value a[i, j] (an expression over i, j) to a new one.
PRODUCTIONS = [
    lambda a: tanh(a),
    lambda a: exp(a / 4),
    lambda a: a * w[j],
    lambda a: a + b[i],
    lambda a: a**2 / 3,
    lambda a: (a**2 + 1) ** sp.Rational(-1, 2),
    lambda a: a - Sum(a.xreplace({i: k}), k) / n,          # centre over the batch
    lambda a: a * Sum(a.xreplace({i: k}) * w[j], k) / n,    # a batch reduction, broadcast back
    lambda a: a - Maximum(a.xreplace({j: Idx("m", d)}), Idx("m", d)),  # max over features
    lambda a: exp(a) / Sum(exp(a.xreplace({j: Idx("m", d)})), Idx("m", d)),  # softmax
    lambda a: log(a**2 + 1),
    lambda a: a * x[i, j],  # fan-out: x is read again
]


def program(choices: list[int], adjoints: str):
    builder = Builder("random", sizes={n: 5, d: 4}, adjoints=adjoints)
    builder.input(x[i, j], normal(1.0))
    builder.input(w[j], uniform(0.5, 1.5))
    builder.input(b[i], normal(0.5))
    value = x[i, j]
    for step, choice in enumerate(choices):
        name = IndexedBase(f"v{step}")
        builder[name[i, j]] = PRODUCTIONS[choice](value)
        value = name[i, j]
    out = IndexedBase("out")
    builder[out[i]] = Sum(value * w[j], j)
    builder.output(out)
    return builder.build()


CHOICES = st.lists(st.integers(0, len(PRODUCTIONS) - 1), min_size=1, max_size=4)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(CHOICES)
def test_atomic_backward_matches_autograd(choices):
    report = run_check(program(choices, "all"), "float64")
    assert report.ok, [r for r in report.rows if not r.approximate]
    assert max(r.relmaxdiff for r in report.rows) < 1e-10


@SETTINGS
@given(CHOICES)
def test_simplified_backward_matches_autograd(choices):
    report = run_check(program(choices, "inputs"), "float64")
    assert report.ok, [r for r in report.rows if not r.approximate]
    assert max(r.relmaxdiff for r in report.rows) < 1e-10
