"""The autograd check on makemore: every row passes in float32, float64 agrees to 1e-10, and a
broken derivative rule is caught."""
import sympy as sp

from symderive import ops
from symderive.check import run_check
from symderive.cli import main

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
