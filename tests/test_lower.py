"""Lowering: each statement's vectorised NumPy code against the naive loop oracle, and the shapes of
the code it prints (matmul, transposes, one-hot, gather, scatter-add, reshape)."""
import math

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, exp, symbols

from symderive import Builder, Maximum
from symderive.ir import Assign
from symderive.lower import Lowerer
from symderive.ops import ArgMax
from symderive.printing import PRINTERS

from .interpret import tensor

n, d, V, B, E = symbols("n d V B E", integer=True, positive=True)
SIZES = {n: 4, d: 3, V: 5, B: 2, E: 3}
i, k, j, c, t, e, v = (Idx("i", n), Idx("k", n), Idx("j", d), Idx("c", V), Idx("t", B),
                       Idx("e", E), Idx("v", V))
f = Idx("f", B * E)
x, w, a, u, q, r, Y, X, C, out = symbols("x w a u q r Y X C out", cls=IndexedBase)


def scope():
    """A program declaring the arrays the cases read, with concrete random values."""
    b = Builder("scope", sizes=dict(SIZES))
    b.input(x[i, j])
    b.input(w[j, c])
    b.input(a[i, c])
    b.input(u[i, f])
    b.input(C[v, e])
    b.input(q[i, t])
    b.labels(Y[i], V)
    b.labels(X[i, t], V)
    b.input(r[i, e, c])
    b[out[i]] = Sum(x[i, j], j)
    b.output(out)
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(4, 3)), "w": rng.normal(size=(3, 5)),
              "a": rng.normal(size=(4, 5)), "u": rng.normal(size=(4, 6)),
              "C": rng.normal(size=(5, 3)), "q": rng.normal(size=(4, 2)),
              "Y": rng.integers(0, 5, 4),
              "X": rng.integers(0, 5, (4, 2)),
              "r": rng.normal(size=(4, 3, 5))}
    return b.build(), arrays


CASES = {
    "matmul": (out[i, c], Sum(x[i, j] * w[j, c], j), "x @ w"),
    "matmul-transposed": (out[j, c], Sum(x[i, j] * a[i, c], i), "x.T @ a"),
    "column-sum": (out[j], Sum(x[i, j], i) / n, "x.sum(0)/n"),
    "broadcast-row": (out[i, c], a[i, c] - Sum(a[i, c], c), "a - a.sum(1)[:, None]"),
    "label-pick": (out[i], a[i, Y[i]], "a[np.arange(n), Y]"),
    "one-hot": (out[i, c], KroneckerDelta(c, Y[i]) * a[i, c], "(np.arange(V) == Y[..., None])"),
    "label-update": (out[i, c], (a[i, c] - KroneckerDelta(c, Y[i])) / n,
                     "out[np.arange(n), Y] -= 1/n"),
    "label-update-of-a-name": (out[i, c], a[i, c] + 2 * KroneckerDelta(c, Y[i]) * x[i, 0 * c],
                               "out = a.copy()"),
    "argmax-one-hot": (out[i, c], KroneckerDelta(c, ArgMax(a[i, v], v)), "a.argmax(1)"),
    "max": (out[i], Maximum(a[i, c], c), "a.max(1)"),
    "gather": (out[i, t, e], C[X[i, t], e], "C[X]"),
    "flatten": (out[i, E * t + e], C[X[i, t], e], ".reshape(n, B*E)"),
    "unflatten": (out[i, t, e], u[i, E * t + e], "u.reshape(n, B, E)"),
    "scatter": (out[v, e], Sum(KroneckerDelta(v, X[i, t]) * u[i, E * t + e], i, t), "np.add.at"),
    # three arrays are contracted two at a time, the smallest intermediate first: no einsum
    "three-arrays": (out[i], Sum(x[i, j] * w[j, c] * a[i, c], j, c), "(x*(a @ w.T)).sum(1)"),
    "elementwise-then-matmul": (out[j, c], Sum(x[i, j] * exp(x[i, j]) * a[i, c], i),
                                "(x*np.exp(x)).T @ a"),
    "batched-matmul": (out[i, t, c], Sum(u[i, E * t + e] * r[i, e, c], e),
                       "u.reshape(n, B, E) @ r"),
    "batched-matmul-transposed": (out[i, c, t], Sum(u[i, E * t + e] * r[i, e, c], e),
                                  "r.transpose(0, 2, 1) @ u.reshape(n, B, E).transpose(0, 2, 1)"),
    "einsum": (out[e, c, j], Sum(r[i, e, c] * x[i, j], i), "np.einsum(\"iec,ij->ecj\", r, x)"),
    "nested-reduction": (out[c], Sum(w[j, c] * x[i, j] * x[k, j], i, j, k), ".sum(0)"),
    "elementwise": (out[i, c], exp(a[i, c]) * Sum(x[i, j], j) ** 2, "np.exp(a)"),
    "broadcast-statement": (out[i, j], Sum(x[k, j], k) / (n - 1), "np.broadcast_to"),
    "scaled-sum": (out[j], Sum(x[i, j] / n, i), "x.sum(0)/n"),
    "scatter-broadcast-values": (out[v, e], Sum(KroneckerDelta(v, X[i, t]) * q[i, t], i, t),
                                 "np.add.at"),
    "scatter-uses-the-row": (out[v, e], Sum(KroneckerDelta(v, X[i, t]) * C[v, e], i, t),
                             ".sum((0, 1))[:, None]"),
    "scalar-function": (out[i, j], x[i, j] * sp.log(d), "math.log(d)"),
    # a bound index the summand does not use multiplies by its range and sums over nothing
    "unused-sum-index": (out[i, j], Sum(x[i, j], k), "out = x*n"),
    "unused-and-used-sum-indices": (out[j], Sum(x[i, j], i, k), "n*x.sum(0)"),
    "scatter-of-a-number": (out[v, e], Sum(KroneckerDelta(v, X[i, t]), i, t), "np.full((n, B, E), 1"),
    "power-of-a-power": (out[i, j], (x[i, j]**2) ** sp.Rational(3, 2), "(x**2)**(3/2)"),
    "sum-over-every-axis": (out[j], Sum(Sum(a[i, c], i), c) * x[0 * i, j], "a.sum()"),
}


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("name", CASES)
def test_lowered_code_matches_the_loop_oracle(name, target):
    lhs, rhs, expected_text = CASES[name]
    program, arrays = scope()
    statement = Assign(lhs, rhs)
    lowered = Lowerer(program).statement(statement)
    printer = PRINTERS[target]()
    lines = printer.statement("out", lowered.code, False)
    sizes = {str(s): value for s, value in SIZES.items()}
    if target == "numpy":
        assert expected_text in "\n".join(lines)
        env = {"np": np, "math": math, "dtype": np.float64, **arrays, **sizes}
    else:
        env = {"torch": torch, "F": torch.nn.functional, "math": math, "dtype": torch.float64,
               "device": "cpu", **{k: torch.as_tensor(v) for k, v in arrays.items()}, **sizes}
    exec("\n".join(lines), env)  # noqa: S102 - the code under test
    axes = [k for index in lhs.indices
            for k in ([index] if isinstance(index, sp.Idx) else index.atoms(sp.Idx))]
    if name == "flatten":
        expected = tensor(rhs, [i, t, e], arrays, SIZES).reshape(4, 6)
    else:
        expected = tensor(rhs, axes if name != "scatter" else [v, e], arrays, SIZES)
    out = env["out"].numpy() if target == "torch" else env["out"]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
