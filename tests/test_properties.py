"""Property tests: random small programs from a grammar of the supported ops; their derived
gradients, atomic and simplified, must match torch autograd in float64."""
import numpy as np
import sympy as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy import Idx, IndexedBase, Sum, exp, log, symbols, tanh

from symderive import Builder, Maximum, normal, uniform
from symderive.check import example_inputs, load_module, run_check
from symderive.derivation import derive_backward
from symderive.emit import module_source

from .interpret import tensor

n, d, V = symbols("n d V", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j, k, v = Idx("i", n), Idx("j", d), Idx("k", n), Idx("v", V)
x, w, b, T, Y = (IndexedBase(name) for name in ("x", "w", "b", "T", "Y"))

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
    lambda a: a + T[Y[i], j],  # a gather by labels: its adjoint is a scatter-add
    lambda a: a * eps * sp.log(d),  # a named constant and a function of a size
    lambda a: a + Sum(a.xreplace({i: k}) / n, k),  # a scalar factor inside a sum
]


def program(choices: list[int], adjoints: str):
    builder = Builder("random", sizes={n: 5, d: 4, V: 3}, constants={eps: 0.5},
                      adjoints=adjoints)
    builder.input(x[i, j], normal(1.0))
    builder.input(w[j], uniform(0.5, 1.5))
    builder.input(b[i], normal(0.5))
    builder.input(T[v, j], normal(0.5))
    builder.labels(Y[i], V)
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


@settings(max_examples=10, deadline=None, derandomize=True)
@given(CHOICES)
def test_emitted_forward_matches_the_loop_oracle(choices):
    """The forward is checked against the index semantics, not only NumPy against torch."""
    p = program(choices, "inputs")
    module = load_module(module_source(p, derive_backward(p), "numpy"), "random_numpy")
    inputs = example_inputs(p, torch.float64, seed=0)
    values = module.forward(*(value.numpy() for value in inputs.values()))
    known = {name: value.numpy() for name, value in inputs.items()}
    scalars = dict(p.sizes) | dict(p.constants)
    for statement in p.body:
        known[statement.name] = tensor(statement.rhs, list(statement.lhs.indices), known, scalars)
        np.testing.assert_allclose(values[statement.name], known[statement.name],
                                   rtol=1e-10, atol=1e-12, err_msg=str(statement))
