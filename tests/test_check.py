"""The autograd check on makemore: every row passes in float32, float64 agrees to 1e-10, and a
broken derivative rule is caught."""
from pathlib import Path

import pytest
import sympy as sp
from sympy import Idx, IndexedBase, Sum, exp, symbols, tanh

from symderive import Builder, ops
from symderive.check import run_check
from symderive.cli import main
from symderive.derivation import load

from .test_grad import NOTEBOOK_ORDER


def test_makemore_float32_every_row_approximate(makemore):
    report = run_check(makemore, "float32", seed=0)
    for target in ("torch", "numpy"):
        rows = [row for row in report.rows if row.target == target]
        assert [row.name for row in rows] == NOTEBOOK_ORDER
        assert all(row.approximate for row in rows), [r for r in rows if not r.approximate]
    assert report.ok and report.forward[0].approximate


def test_makemore_float64_relative_difference_below_1e_10(makemore):
    report = run_check(makemore, "float64", seed=1)
    assert len(report.rows) == 52
    assert max(row.relmaxdiff for row in report.rows) <= 1e-10


def test_broken_tanh_rule_is_reported(makemore, monkeypatch, root, capsys):
    right = ops.OPS[sp.tanh]
    broken = ops.Op(right.name, lambda y, x: (1 - y,), right.numpy, right.torch, right.latex,
                    right.domain)
    monkeypatch.setitem(ops.OPS, sp.tanh, broken)
    report = run_check(makemore, "float32", seed=0)
    failing = {row.name for row in report.rows if not row.approximate}
    assert not report.ok
    assert "hpreact" in failing and "W2" not in failing  # wrong from tanh's input downwards
    assert main(["check", str(root / "derivations" / "makemore_mlp.py")]) == 1
    assert "SOME VALUES DIFFER" in capsys.readouterr().out


def _scalar_intermediate(b, x, y, s, loss, i, j):
    b[s] = Sum(Sum(x[i, j] ** 2, i), j)  # a scalar name read by a later statement
    b[y[i, j]] = x[i, j] / s
    b[loss] = Sum(Sum(y[i, j] * tanh(x[i, j]), i), j)
    b.loss(loss)


def _dead_statement(b, x, y, s, loss, i, j):
    b[IndexedBase("unused")[i, j]] = exp(x[i, j])  # nothing reads it: x still completes
    b[y[i, j]] = tanh(x[i, j])
    b[loss] = Sum(Sum(y[i, j], i), j)  # a constant adjoint, broadcast over y
    b.loss(loss)


def _output_read_again(b, x, y, s, loss, i, j):
    b[y[i, j]] = x[i, j] * 2
    b[IndexedBase("z")[i]] = Sum(exp(y[i, j]), j)  # y is an output and has a consumer
    b.output(y, IndexedBase("z"))


@pytest.mark.parametrize("adjoints", ["all", "inputs"])
@pytest.mark.parametrize("shape", [_scalar_intermediate, _dead_statement, _output_read_again],
                         ids=lambda f: f.__name__[1:])
def test_unusual_program_shapes_match_autograd(shape, adjoints):
    n, d = symbols("n d", integer=True, positive=True)
    i, j = Idx("i", n), Idx("j", d)
    x, y = IndexedBase("x"), IndexedBase("y")
    b = Builder("shapes", sizes={n: 4, d: 3}, adjoints=adjoints)
    b.input(x[i, j])
    shape(b, x, y, symbols("s"), symbols("loss"), i, j)
    report = run_check(b.build(), "float64")
    assert report.ok and {row.name for row in report.rows} >= {"x"}
    assert max(row.relmaxdiff for row in report.rows) < 1e-10


DERIVATIONS = sorted(p.stem for p in (Path(__file__).parent.parent / "derivations").glob("*.py"))


@pytest.mark.parametrize("name", DERIVATIONS)
def test_every_derivation_passes_check_in_float32(name, root):
    """Every row approximate, every gradient float32 and of its value's shape (compare fails
    a row otherwise), every reference the derivation declares included."""
    report = run_check(load(root / "derivations" / f"{name}.py"), "float32", seed=7)
    assert report.ok, [row for row in report.rows + report.forward if not row.approximate]
