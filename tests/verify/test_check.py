"""The check against the oracle: makemore's rows in the notebook's order pass in float32 and agree
to 1e-10 in float64; every derivation passes; a broken derivative rule and a broken forward lowering
are both caught (the reference no longer runs through the emitted forward); the finite-difference
and autograd.Function rows exist and pass; example values outside a function's domain are a
ProgramError naming the statement."""
from dataclasses import replace
from pathlib import Path

import pytest
import sympy as sp
from sympy import Idx, IndexedBase, Sum, exp, log, symbols, tanh

from symderive import Builder, normal
from symderive.cli import main
from symderive.codegen.lower import Lowerer
from symderive.program import ops
from symderive.program.ir import ProgramError
from symderive.program.load import load
from symderive.verify.check import FINITE_DIFFERENCES, ORACLE, STRESS, run_check

from ..algebra.test_grad import NOTEBOOK_ORDER

DERIVATIONS = sorted(p.stem for p in (Path(__file__).parent.parent.parent / "derivations").glob("*.py"))


def rows(report, reference=ORACLE, target=None, forward=False):
    return [row for row in (report.forward if forward else report.rows)
            if row.reference == reference and target in (None, row.target)]


def floats(program):
    return [x.name for x in program.inputs if not x.integer]


def test_makemore_float32_every_row_approximate(makemore):
    report = run_check(makemore, "float32", seed=0)
    for target in ("torch", "numpy"):
        assert [row.name for row in rows(report, target=target)] == NOTEBOOK_ORDER
        # every forward value of each target, not only the loss, against the oracle
        assert [row.name for row in rows(report, target=target, forward=True)] == \
            [s.name for s in makemore.body]
    assert report.ok, [r for r in report.rows + report.forward if not r.approximate]
    assert [row.name for row in rows(report, target="function", forward=True)] == ["loss"]


def test_makemore_float64_relative_difference_below_1e_10(makemore):
    report = run_check(makemore, "float64", seed=1)
    oracle = rows(report)
    assert len(oracle) == 2 * 26 + len(floats(makemore))
    assert max(row.relmaxdiff for row in oracle + rows(report, forward=True)) <= 1e-10


def test_broken_tanh_rule_is_reported(makemore, monkeypatch, root, capsys):
    right = ops.OPS[sp.tanh]
    broken = ops.Op(right.name, lambda y, x: (1 - y,), right.numpy, right.torch, right.latex,
                    right.domain)
    monkeypatch.setitem(ops.OPS, sp.tanh, broken)
    report = run_check(makemore, "float32", seed=0)
    failing = {row.name for row in report.rows if not row.approximate}
    assert not report.ok and all(row.approximate for row in report.forward)
    assert "hpreact" in failing and "W2" not in failing  # wrong from tanh's input downwards
    assert "W1" in {row.name for row in rows(report, FINITE_DIFFERENCES) if not row.approximate}
    assert main(["check", str(root / "derivations" / "makemore_mlp.py")]) == 1
    assert "SOME VALUES DIFFER" in capsys.readouterr().out


def test_broken_forward_lowering_is_reported(root, monkeypatch):
    """The reference does not run through the emitted forward: a lowering that doubles one sum
    (batchnorm's variance) fails that forward value and, downstream, the gradients."""
    right = Lowerer.sum

    def doubled(self, e, order):
        value = right(self, e, order)
        if "bndiff2" in {str(read.base.label) for read in e.atoms(sp.Indexed)}:
            return replace(value, code=2 * value.code)
        return value

    program = load(root / "derivations" / "batchnorm.py")
    assert run_check(program, "float64").ok
    monkeypatch.setattr(Lowerer, "sum", doubled)
    report = run_check(program, "float64")
    wrong_forward = {(row.name, row.target) for row in report.forward if not row.approximate}
    assert {("bnvar", "torch"), ("bnvar", "numpy"), ("hpreact", "function")} <= wrong_forward
    assert ("bnmeani", "torch") not in wrong_forward  # only what the broken sum feeds
    for target in ("torch", "numpy", "function"):
        assert "hprebn" in {row.name for row in rows(report, target=target)
                            if not row.approximate}
    assert not all(row.approximate for row in rows(report, FINITE_DIFFERENCES))


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


def _constant_loss(b, x, y, s, loss, i, j):
    k = Idx("k", i.upper + 1)
    b[loss] = Sum(Sum(x[i, j] - Sum(x[k, j], k) / (i.upper + 1), i), j)  # 0 for every x: the
    b.loss(loss)  # finite difference is rounding noise, which its tolerance allows


@pytest.mark.parametrize("adjoints", ["all", "inputs"])
@pytest.mark.parametrize("shape", [_scalar_intermediate, _dead_statement, _output_read_again,
                                   _constant_loss],
                         ids=lambda f: f.__name__[1:])
def test_unusual_program_shapes_match_the_oracle(shape, adjoints):
    n, d = symbols("n d", integer=True, positive=True)
    i, j = Idx("i", n), Idx("j", d)
    x, y = IndexedBase("x"), IndexedBase("y")
    b = Builder("shapes", sizes={n: 4, d: 3}, adjoints=adjoints)
    b.input(x[i, j])
    shape(b, x, y, symbols("s"), symbols("loss"), i, j)
    report = run_check(b.build(), "float64")
    assert report.ok, [r for r in report.rows + report.forward if not r.approximate]
    assert {row.name for row in rows(report)} >= {"x"}
    assert max(row.relmaxdiff for row in rows(report) + rows(report, forward=True)) < 1e-10


# Known and open: at the "inputs + 1000" stress point every value of the GPT is so large that
# float32 loses its gradients wholesale: autograd through torch's own F.layer_norm,
# F.scaled_dot_product_attention and F.gelu there is off by up to 2e14 of the largest gradient,
# the emitted backward by 20-400x its allowance, which the oracle's own float32 chain sets. Until
# the allowance accounts for that, the row fails and the suite says so (the README's main job
# checks gpt.py in float64).
STRESS_OPEN = {"gpt": "float32 rows at the 'inputs + 1000' stress point exceed their allowance"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xfail(
    reason=STRESS_OPEN[name], strict=True)) if name in STRESS_OPEN else name
    for name in DERIVATIONS])
def test_every_derivation_passes_check_in_float32(name, root):
    """Every row approximate, every gradient float32 and of its value's shape (compare fails
    a row otherwise), every reference the derivation declares included, and the float32 rows at
    the points where cancellation would show (inputs moved by a common offset, scaled up)."""
    program = load(root / "derivations" / f"{name}.py")
    report = run_check(program, "float32", seed=7)
    assert report.ok, [row for row in report.rows + report.forward if not row.approximate]
    declared = {label for _, label, _ in program.references}
    stressed = {f"the oracle at {label}" for label, *_ in STRESS}
    assert {row.reference for row in report.rows + report.forward} == \
        {ORACLE, FINITE_DIFFERENCES} | declared | stressed
    for label in stressed:  # every gradient of both targets there
        assert sorted(row.name for row in report.rows if row.reference == label) == \
            sorted(2 * [row.name for row in report.rows if row.reference == ORACLE
                        and row.target == "torch"])


def test_a_gradient_that_cancels_at_an_offset_fails_its_stress_row():
    """The variance gradient of a gaussian NLL with the square of the difference expanded (as
    ``expand`` once wrote it): float32 at inputs + 1000 loses digits the statement-by-statement
    chain rule keeps, and the stress row says so; kept whole, it passes."""
    from sympy.core.cache import CACHE

    from symderive.algebra import terms

    program = load(Path(__file__).parent.parent.parent / "examples" / "activations" /
                   "gaussian_nll_loss.py")
    assert run_check(program, "float32").ok
    original = terms._elementwise
    try:
        terms._elementwise = lambda expr: False  # every power of a sum distributed again
        for cached in CACHE:
            cached.cache_clear()
        report = run_check(program, "float32")
    finally:
        terms._elementwise = original
        for cached in CACHE:
            cached.cache_clear()
    failed = {(row.name, row.reference) for row in report.rows if not row.approximate}
    assert failed == {("v", "the oracle at inputs + 1000")}


@pytest.mark.parametrize("name", DERIVATIONS)
def test_every_derivation_passes_check_in_float64(name, root):
    """float64 agrees with the oracle to 1e-9, and one finite-difference row per float input and
    one Function row per float input (and output) exist and pass."""
    program = load(root / "derivations" / f"{name}.py")
    report = run_check(program, "float64", seed=3)
    assert report.ok, [row for row in report.rows + report.forward if not row.approximate]
    assert max(row.relmaxdiff for row in rows(report) + rows(report, forward=True)) <= 1e-9
    differences = rows(report, FINITE_DIFFERENCES)
    assert [row.name for row in differences] == floats(program)
    assert all(row.target == "torch" and not row.exact for row in differences)
    assert max(row.relmaxdiff for row in differences) < 1e-8  # the tolerance is 1e-6
    assert [row.name for row in rows(report, target="function")] == floats(program)
    assert [row.name for row in rows(report, target="function", forward=True)] == \
        list(program.outputs)


def test_table_has_a_section_per_reference_and_target(makemore):
    table = run_check(makemore, "float64", seed=0).table().splitlines()
    sections = [line for line in table if " vs " in line]
    assert sections == [
        "makemore_mlp: emitted torch backward vs the oracle under torch autograd (float64)",
        "makemore_mlp: emitted numpy backward vs the oracle under torch autograd (float64)",
        "makemore_mlp: emitted function backward vs the oracle under torch autograd (float64)",
        "makemore_mlp: emitted torch backward vs central finite differences (float64)",
        "makemore_mlp: emitted torch forward vs the oracle (float64)",
        "makemore_mlp: emitted numpy forward vs the oracle (float64)",
        "makemore_mlp: emitted function forward vs the oracle (float64)",
    ]
    assert table[1].startswith("logprobs        | exact: ")
    assert table[-1] == f"makemore_mlp: {66 + 41} rows, all approximately equal"


LOG_LAYER = '''
from sympy import Idx, IndexedBase, log, symbols
from symderive import Builder, normal

n = symbols("n", integer=True, positive=True)
i = Idx("i", n)
x, y = IndexedBase("x"), IndexedBase("y")
layer = Builder("{name}", sizes={{n: 8}})
layer.input(x[i], normal(1.0))
layer[y[i]] = log(x[i])
layer.output(y)
program = layer.build()
'''
DOMAIN_ERROR = ("layer: statement 'y[i] = log(x[i])' is not finite on the example values (x is "
                "drawn from normal(1.0)); declare x with uniform(...) inside log's domain, e.g. "
                "uniform(0.5, 2.0)")


def test_example_values_outside_the_domain_name_the_statement(tmp_path, capsys):
    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    x, y = IndexedBase("x"), IndexedBase("y")
    b = Builder("layer", sizes={n: 8})
    b.input(x[i], normal())
    b[y[i]] = log(x[i])
    b.output(y)
    with pytest.raises(ProgramError) as error:
        run_check(b.build())
    assert str(error.value) == DOMAIN_ERROR
    path = tmp_path / "layer.py"
    path.write_text(LOG_LAYER.format(name="layer"))
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"symderive: {DOMAIN_ERROR}\n"
