"""The oracle against the loop-by-loop evaluator of tests/interpret.py: every derivation statement
by statement (at small sizes), their atomic backwards (``+=`` included), and hand-made expressions
for each kind of read and reduction; plus its own function table and autograd through it."""
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import Idx, IndexedBase, KroneckerDelta, Rational, Sum, exp, log, symbols, tanh

from symderive import Builder
from symderive.algebra.grad import backward
from symderive.program import ops
from symderive.program.ir import flatten_parts, indices_of, lhs_index_set
from symderive.program.load import load
from symderive.program.ops import ArgMax, Maximum
from symderive.verify.check import example_inputs
from symderive.verify.oracle import FUNCTIONS, evaluate, evaluate_expression

from ..interpret import tensor

DERIVATIONS = sorted(p.stem for p in (Path(__file__).parent.parent.parent / "derivations").glob("*.py"))
SMALL = {"n": 4, "H": 3, "d": 3, "V": 5, "B": 2, "E": 3, "T": 3, "P": 1, "D": 3, "NH": 2, "HE": 2,
         "M": 3}


def small(program):
    """The program at sizes the loop evaluator gets through in a moment."""
    return replace(program, sizes=tuple((s, SMALL[str(s)]) for s, _ in program.sizes))


def loop_values(program, inputs: dict) -> dict:
    """Every value by interpret.py's loops, each statement over its lhs indices, then reshaped."""
    known = {name: value.double().numpy() if value.is_floating_point() else value.numpy()
             for name, value in inputs.items()}
    scalars = dict(program.sizes) | dict(program.constants)
    for statement in program.body:
        value = tensor(statement.rhs, lhs_index_set(statement.lhs), known, scalars)
        shape = [math.prod(int(sp.sympify(k.upper + 1).subs(scalars))
                           for k in flatten_parts(index) or [index])
                 for index in indices_of(statement.lhs)]
        value = value.reshape(shape)
        known[statement.name] = known[statement.name] + value if statement.accumulate else value
    return known


def test_every_op_has_its_own_oracle_function():
    """Every function class of the op table has an oracle entry (a torch callable, not the table's
    spelling), and it agrees with SymPy's own value inside the op's domain."""
    assert set(ops.OPS) - {ops.Piecewise} <= set(FUNCTIONS)  # Piecewise: its own method
    points = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    for function, op in ops.OPS.items():
        if function is ops.Piecewise:
            continue
        assert callable(FUNCTIONS[function]) and not isinstance(FUNCTIONS[function], str)
        low, high = op.domain
        values = low + (high - low) * points
        expr = x[i] ** Rational(3, 2) if function is sp.Pow else function(x[i])
        ours = evaluate_expression(expr, [i], {"x": values}, {n: 5})
        expected = [float(expr.subs(x[i], sp.Float(float(v), 30)).evalf(30)) for v in values]
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-14, err_msg=op.name)


@pytest.mark.parametrize("name", DERIVATIONS)
def test_derivations_match_the_loop_evaluator(name, root):
    program = small(load(root / "derivations" / f"{name}.py"))
    inputs = example_inputs(program, torch.float64, seed=3)
    ours = evaluate(program, inputs)
    expected = loop_values(program, inputs)
    assert set(ours) == set(expected) == set(program.names)
    for statement in program.body:
        np.testing.assert_allclose(ours[statement.name].numpy(), expected[statement.name],
                                   rtol=1e-12, atol=1e-12, err_msg=str(statement))


@pytest.mark.parametrize("name", ["makemore_mlp", "cross_entropy", "batchnorm"])
def test_atomic_backwards_match_the_loop_evaluator(name, root):
    """Backward programs: ``+=`` statements, deltas with ArgMax, scatter-shaped label sums."""
    program = small(load(root / "derivations" / f"{name}.py"))
    chain = backward(program)
    inputs = example_inputs(program, torch.float64, seed=4)
    values = evaluate(program, inputs)
    generator = torch.Generator().manual_seed(0)
    arrays = {x.name: values[x.name] if x.name in values else torch.randn(
        [int(sp.sympify(s).subs(dict(program.sizes))) for s in chain.shape(x.name)],
        generator=generator, dtype=torch.float64) for x in chain.inputs}
    ours = evaluate(chain, arrays)
    expected = loop_values(chain, arrays)
    assert any(s.accumulate for s in chain.body) or name != "makemore_mlp"
    for statement in chain.body:
        np.testing.assert_allclose(ours[statement.name].numpy(), expected[statement.name],
                                   rtol=1e-12, atol=1e-12, err_msg=str(statement))


n, V, B, E, P, U = symbols("n V B E P U", integer=True, positive=True)
i, j, c, m, t, e, p, u = (Idx("i", n), Idx("j", n), Idx("c", V), Idx("m", V), Idx("t", B),
                          Idx("e", E), Idx("p", P), Idx("u", U))
x, Y, X, C, flat, W = (IndexedBase(name) for name in ("x", "Y", "X", "C", "flat", "W"))
SIZES = {n: 3, V: 4, B: 2, E: 3, P: 3, U: 2}
GENERATOR = torch.Generator().manual_seed(5)
ARRAYS = {
    "x": torch.randn(3, 4, generator=GENERATOR, dtype=torch.float64),
    "Y": torch.tensor([3, 0, 2]),
    "X": torch.tensor([[1, 3], [0, 0], [2, 1]]),
    "C": torch.randn(4, 3, generator=GENERATOR, dtype=torch.float64),
    "flat": torch.randn(3, 6, generator=GENERATOR, dtype=torch.float64),
    "W": torch.randn(3, 3, generator=GENERATOR, dtype=torch.float64),
}
TIED = {"x": torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 0.0, 1.0]],
                          dtype=torch.float64)}

EXPRESSIONS = [
    ("label read", x[i, Y[i]], [i]),
    ("gather", C[X[i, t], e], [i, t, e]),
    ("flattened read", flat[i, E * t + e], [i, t, e]),
    ("transpose", W[j, i], [i, j]),
    ("diagonal", W[i, i], [i]),
    ("affine read", x[i, p + u] * u, [i, p, u]),
    ("Maximum", Maximum(x[i, c], c), [i]),
    ("ArgMax in a delta", KroneckerDelta(c, ArgMax(x[i, m], m)) * x[i, c], [i, c]),
    ("label delta", Sum(KroneckerDelta(c, Y[i]) * exp(x[i, c]), c), [i]),
    ("unused index summed", Sum(x[i, c], j), [i, c]),
    ("two indices summed", Sum(x[i, c] ** 2, i, c), []),
    ("broadcast over an axis", tanh(x[j, c]) + Rational(1, 2), [i, j, c]),
    ("sizes and constants", x[i, c] / (n - 1) + log(V) * symbols("eps"), [c, i]),
    ("a power of a size", n**-1 * Sum(x[i, c], c), [i]),
]


@pytest.mark.parametrize("arrays", [ARRAYS, ARRAYS | TIED], ids=["random", "ties"])
@pytest.mark.parametrize(("what", "expr", "axes"), EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_expressions_match_the_loop_evaluator(what, expr, axes, arrays):
    scalars = SIZES | {symbols("eps"): 0.25}
    ours = evaluate_expression(expr, axes, arrays, scalars)
    expected = tensor(expr, axes, {k: v.numpy() for k, v in arrays.items()}, scalars)
    assert ours.dtype == torch.float64 and list(ours.shape) == list(expected.shape)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-13, atol=1e-13, err_msg=what)


def _scalars_program():
    s, loss = symbols("s loss")
    y = IndexedBase("y")
    b = Builder("scalars", sizes={n: 3, V: 4})
    b.input(x[i, c])
    b[s] = Sum(Sum(x[i, c] ** 2, i), c)  # a scalar read by later statements
    b[y[i, c]] = x[i, c] / s
    b[IndexedBase("z")[i, c]] = s  # a bare scalar broadcast: still its own value
    b[loss] = Sum(Sum(y[i, c] * tanh(x[i, c]), i), c) + s
    b.loss(loss)
    return b.build()


def test_scalar_statements_and_fresh_intermediates():
    program = _scalars_program()
    leaf = ARRAYS["x"].clone().requires_grad_()
    values = evaluate(program, {"x": leaf})
    expected = loop_values(program, {"x": ARRAYS["x"]})
    for name in ("s", "y", "z", "loss"):
        np.testing.assert_allclose(values[name].detach().numpy(), expected[name], rtol=1e-13)
        assert values[name].grad_fn is not None  # not a leaf: check can retain its gradient
    assert values["x"] is leaf and values["s"].shape == () and values["z"].shape == (3, 4)
    values["loss"].backward()
    x0 = ARRAYS["x"].clone().requires_grad_()
    s0 = (x0**2).sum()
    ((x0 / s0 * torch.tanh(x0)).sum() + s0).backward()
    torch.testing.assert_close(leaf.grad, x0.grad, rtol=1e-13, atol=1e-13)


def test_dtype_and_ties():
    """float32 inputs are upcast by default and kept with dtype=float32; a tied maximum sends its
    gradient to the first maximal index, as the derived ArgMax does."""
    b = Builder("ties", sizes={n: 3, V: 4})
    b.input(x[i, c])
    b[IndexedBase("mx")[i]] = Maximum(x[i, c], c)
    b.output(IndexedBase("mx"))
    program = b.build()
    leaf = TIED["x"].clone().requires_grad_()
    value = evaluate(program, {"x": leaf})["mx"]
    value.backward(torch.ones(3, dtype=torch.float64))
    assert leaf.grad.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]
    assert evaluate(program, {"x": TIED["x"].float()})["mx"].dtype == torch.float64
    assert evaluate(program, {"x": TIED["x"].float()}, torch.float32)["mx"].dtype == torch.float32


def test_piecewise_against_the_loop_evaluator():
    """First branch whose condition holds, with &, | and a constant in the comparison; autograd
    through it sends each point's gradient to its branch."""
    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    x = IndexedBase("x")
    v = x[i]
    c = symbols("c")
    forms = [sp.Piecewise((-1, v <= -1), (1, v >= 1), (v, True)),
             sp.Piecewise((v**2, (v > -c) & (v < c)), (exp(v), (v < -2) | (v > 2)), (3*v, True)),
             sp.Piecewise((tanh(v), sp.Abs(v) <= c), (0, True))]
    values = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    for form in forms:
        expr = ops.as_piecewise(form)
        ours = evaluate_expression(expr, [i], {"x": values}, {n: 13, c: 0.5})
        expected = tensor(expr, [i], {"x": values.detach().numpy()}, {n: 13, c: 0.5})
        np.testing.assert_allclose(ours.detach().numpy(), expected, rtol=1e-14, err_msg=str(form))
    (grad,) = torch.autograd.grad(ours.sum(), values)
    inside = values.detach().abs() <= 0.5
    torch.testing.assert_close(grad[inside], 1 - torch.tanh(values.detach()[inside])**2)
    assert (grad[~inside] == 0).all()
