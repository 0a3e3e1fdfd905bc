"""Lowering: each statement's vectorised NumPy code against the naive loop oracle, and the shapes of
the code it prints (matmul, transposes, one-hot, gather, scatter-add, reshape)."""
import json
import math

import numpy as np
import pytest
import sympy as sp
import torch
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, exp, symbols

from symderive import Builder, Maximum
from symderive.codegen.helpers import QUOTIENT
from symderive.codegen.lower import Lowerer
from symderive.codegen.printing import PRINTERS
from symderive.program.ir import Assign
from symderive.program.ops import ArgMax

from ..interpret import tensor

HELPERS = {"math": math}
exec(QUOTIENT, HELPERS)  # noqa: S102 - the helper the emitted modules define
quotient = HELPERS["quotient"]

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
                     "out[np.arange(n), Y] -= quotient(1, n)"),
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
        env = {"np": np, "math": math, "quotient": quotient, "dtype": np.float64, **arrays, **sizes}
    else:
        env = {"torch": torch, "F": torch.nn.functional, "math": math, "quotient": quotient,
               "dtype": torch.float64,
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


DIAGONALS = {
    # the adjoint of a diagonal read writes onto the diagonal: dx[arange(n), arange(n)] += ...
    "diagonal": ("b.input(x[i, k])\nb.input(w[i])\nb[y[i]] = x[i, i]*w[i]\nb.output(y)",
                 "dx[np.arange(n), np.arange(n)] += "),
    "trace": ("b.input(x[i, k])\nb[loss] = Sum(x[i, i], i)\nb.loss(loss)",
              "dx[np.arange(n), np.arange(n)] += "),
}


@pytest.mark.parametrize("name", DIAGONALS)
def test_diagonals_and_traces_lower_and_pass_the_check(name, tmp_path, capsys):
    """A diagonal read and a trace: the forward gathers the diagonal, the backward adds onto it,
    and ``symderive check --dtype float64`` finds every forward value and gradient of both
    targets and the Function approximately equal to the oracle's."""
    from symderive.cli import main

    statements, adjoint = DIAGONALS[name]
    path = tmp_path / f"{name}.py"
    path.write_text(
        "from sympy import Idx, IndexedBase, Sum, Symbol, symbols\nfrom symderive import Builder\n"
        "n = symbols('n', integer=True, positive=True)\ni, k = Idx('i', n), Idx('k', n)\n"
        "x, w, y = symbols('x w y', cls=IndexedBase)\nloss = Symbol('loss')\n"
        f"b = Builder('{name}', sizes={{n: 4}})\n{statements}\nprogram = b.build()\n")
    assert main(["check", str(path), "--dtype", "float64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"]
    targets = {(row["name"], row["target"]) for row in report["rows"]}
    assert {("x", "torch"), ("x", "numpy"), ("x", "function")} <= targets
    assert {row["target"] for row in report["forward"]} >= {"torch", "numpy"}
    assert main(["emit", str(path), "--target", "numpy", "-o", str(tmp_path)]) == 0
    assert adjoint in (tmp_path / f"{name}_numpy.py").read_text()


def test_an_unflattening_read_and_its_adjoint_are_reshapes():
    """``y[i, t, e] = x[i, d*t + e]*w[e]``: the read is a reshape of x, its adjoint a reshape of
    the summand back (no one-hot matrix of (T, d, T*d)), and T is read as x.shape[1]//d."""
    from symderive import normal
    from symderive.algebra.simplify import derive_backward
    from symderive.codegen.emit import module_source
    from symderive.verify.check import run_check

    d, T = symbols("d T", integer=True, positive=True)
    t, e, c = Idx("t", T), Idx("e", d), Idx("c", T * d)
    w, y2 = IndexedBase("w"), IndexedBase("y2")
    b = Builder("unflatten", sizes={n: 3, d: 2, T: 2})
    b.input(x[i, c], normal(1.0))
    b.input(w[e], normal(1.0))
    b[y2[i, t, e]] = x[i, d * t + e] * w[e]
    b.output(y2)
    program = b.build()
    assert run_check(program, "float64").ok
    source = module_source(program, derive_backward(program), "numpy")
    assert "dx = (dy2*w).reshape(n, T*d)" in source and "T = (x.shape[1])//d" in source


def test_a_maximum_of_three_lowers_as_maxima_of_two():
    """A read through maps turns ``Max(a0, 0)`` with ``a0 = Max(x, p)`` into SymPy's flattened
    ``Max(0, p, x)``; the libraries' maximum takes two values (NumPy's third argument is where to
    write), so it is nested (found by the long fuzz)."""
    from symderive import normal, uniform
    from symderive.verify.check import run_check

    p_, a0, a1, Z = symbols("p a0 a1 Z", cls=IndexedBase)
    loss = symbols("loss")
    b = Builder("max3", sizes={n: 4, d: 3})
    b.input(x[i, j], normal(1.0))
    b.input(p_[i, j], uniform(0.5, 2.0))
    b.labels(Z[i], d)
    b[a0[i, j]] = sp.Max(x[i, j], p_[i, j])
    b[a1[i, j]] = sp.Max(a0[i, j], 0)
    b[loss] = -Sum(a1[i, Z[i]], i) / n
    b.loss(loss)
    assert run_check(b.build(), "float64").ok
