"""The activations and losses of examples/activations: each checks (emitted NumPy and torch against
the oracle, finite differences and its declared torch reference, ``F.<op>``), and the named stable
functions keep forward and backward finite far out (float32 at +-100, float64 at +-800).

Example values are random normal (or uniform), which almost surely miss the kinks of Max, Min, Abs
and Heaviside; the kinks themselves are found from each file's forward and its emitted gradient
there compared with torch's, and docs/activations.md lists exactly the kinks where they differ."""
import runpy
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch

from symderive import Builder, Program
from symderive.algebra.simplify import compact_gradients, derive_backward
from symderive.codegen.emit import module_source
from symderive.program.load import load
from symderive.program.ops import Piecewise, as_piecewise, log_sigmoid, sigmoid, softplus
from symderive.tex.documents import document
from symderive.verify.check import example_inputs, load_module, run_check
from symderive.verify.oracle import evaluate, evaluate_expression

FOLDER = Path(__file__).parent.parent / "examples" / "activations"
NAMES = sorted(p.stem for p in FOLDER.glob("*.py") if p.stem != "table")


@pytest.mark.parametrize("name", NAMES)
def test_activation_checks(name):
    program = load(FOLDER / f"{name}.py")
    report = run_check(program, "float64")
    assert report.ok, report
    labels = {row.reference for row in report.rows}
    declared = {label for _, label, _ in program.references}
    assert declared and declared <= labels, (declared, labels)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "logsigmoid", "silu", "mish",
                                  "bce_with_logits"])
@pytest.mark.parametrize(("dtype", "far"), [("float32", 100.0), ("float64", 800.0)])
def test_named_functions_are_stable_far_out(name, dtype, far):
    """Forward and backward finite, in both targets, at +-far and around 0."""
    assert_finite_far_out(load(FOLDER / f"{name}.py"), dtype, far)


# The same functions written out by hand (any argument: here x and 2*x - 1) and by name.
n, d = sp.symbols("n d", integer=True, positive=True)
i, j = sp.Idx("i", n), sp.Idx("j", d)
X = sp.IndexedBase("x")[i, j]
U = 2*X - 1
HAND_WRITTEN = {
    "sigmoid": (1 / (1 + sp.exp(-X)), sigmoid(X)),
    "sigmoid_ratio": (sp.exp(U) / (1 + sp.exp(U)), sigmoid(U)),
    "softplus": (sp.log(1 + sp.exp(U)), softplus(U)),
    "log_sigmoid": (-sp.log(1 + sp.exp(-X)), log_sigmoid(X)),
    "log_of_sigmoid": (sp.log(1 / (1 + sp.exp(-U))), log_sigmoid(U)),
    "silu": (X / (1 + sp.exp(-X)), X * sigmoid(X)),
    "mish": (X * sp.tanh(sp.log(1 + sp.exp(X))), X * sp.tanh(softplus(X))),
}


def layer(rhs) -> Program:
    b = Builder("hand", sizes={n: 7, d: 1})
    b.input(X)
    b[sp.IndexedBase("y")[i, j]] = rhs
    b.output(sp.IndexedBase("y"))
    return b.build()


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_forms_are_recognised(name):
    """Built from the written-out form, the statement is the named one, with the rewrites
    recorded; every rule's before and after agree at random points (in float64)."""
    written, named = HAND_WRITTEN[name]
    program = layer(written)
    assert program.body[0].rhs == named
    assert program.rewrites and all(r.statement == "y" for r in program.rewrites)
    values = torch.linspace(-5, 5, 7, dtype=torch.float64)
    for rewrite in program.rewrites:
        before, after = (evaluate_expression(e, [i, j], {"x": values.reshape(7, 1)}, {n: 7, d: 1})
                         for e in (rewrite.before, rewrite.after))
        torch.testing.assert_close(before, after, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
@pytest.mark.parametrize("spelling", [0, 1], ids=["hand-written", "named"])
@pytest.mark.parametrize(("dtype", "far"), [("float32", 100.0), ("float64", 800.0)])
def test_hand_written_and_named_are_stable_far_out(name, spelling, dtype, far):
    assert_finite_far_out(layer(HAND_WRITTEN[name][spelling]), dtype, far)


def test_recognition_is_only_an_identity():
    """Shapes that are not the logistic function are left alone: 1/(2 + exp(-x)),
    log(2 + exp(x)), exp(x)/(2 + exp(x))."""
    for expr in (1 / (2 + sp.exp(-X)), sp.log(2 + sp.exp(X)), sp.exp(X) / (2 + sp.exp(X))):
        assert layer(expr).rewrites == ()


def assert_finite_far_out(program, dtype: str, far: float) -> None:
    derived = derive_backward(program)
    points = np.array([-far, -far / 2, -1.0, 0.0, 1.0, far / 2, far], dtype=dtype)
    for target in ("numpy", "torch"):
        module = load_module(module_source(program, derived, target),
                             f"{program.name}_{target}_far")
        arrays = {}
        for x in program.inputs:
            shape = (len(points),) if x.name == "x" else (len(points),)
            arrays[x.name] = points if x.name == "x" else np.full(shape, 0.5, dtype=dtype)
        arrays = {k: v.reshape(len(points), 1) for k, v in arrays.items()}
        if target == "torch":
            arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
        values = module.forward(*arrays.values())
        upstream = [np.ones_like(np.asarray(values[name_]))
                    if target == "numpy" else torch.ones_like(values[name_])
                    for name_ in program.outputs]
        if program.loss:
            upstream = []
        grads = module.backward(values, *upstream)
        for label, value in list(values.items()) + list(grads.items()):
            value = np.asarray(value)
            assert np.isfinite(value).all(), (target, label, value)
            assert value.dtype == np.dtype(dtype), (target, label, value.dtype)


@pytest.mark.parametrize("name", NAMES)
def test_textbook_gradient_is_the_derived_one(name):
    """docs/activations.md's textbook column is honest: each file's TEXTBOOK equals the derived
    gradient with respect to x at random points (forward values from the oracle, a random
    upstream)."""
    namespace = runpy.run_path(str(FOLDER / f"{name}.py"), run_name=f"derivation_{name}")
    program = namespace["program"]
    (gradient,) = [g for g in compact_gradients(program) if g.name == "x"]
    arrays = evaluate(program, example_inputs(program, torch.float64, seed=5))
    generator = torch.Generator().manual_seed(6)
    for output in program.outputs if not program.loss else ():
        shape = tuple(int(sp.sympify(s).subs(dict(program.sizes))) for s in program.shape(output))
        arrays["d" + output] = torch.randn(shape, generator=generator, dtype=torch.float64)
    scalars = dict(program.sizes) | dict(program.constants)
    axes = list(gradient.lhs.indices)
    derived, textbook = (evaluate_expression(e, axes, arrays, scalars)
                         for e in (gradient.expr, as_piecewise(namespace["TEXTBOOK"])))
    torch.testing.assert_close(textbook, derived, rtol=1e-12, atol=1e-12)


def test_piecewise_emits_where_and_prints_cases():
    """A Piecewise forward and its branch-wise gradient: nested where in both targets, the
    working dtype kept where every branch of the gradient is a number (float32 stays float32),
    and a cases environment in the LaTeX derivation."""
    program = load(FOLDER / "hardtanh_piecewise.py")
    derived = derive_backward(program)
    values = np.linspace(-2, 2, 9, dtype=np.float32).reshape(9, 1)
    expected = ((values > -1) & (values < 1)).astype(np.float32)
    for target, where in (("numpy", "np.where("), ("torch", "torch.where(")):
        source = module_source(program, derived, target)
        assert where in source
        module = load_module(source, f"hardtanh_piecewise_{target}_where")
        x = values if target == "numpy" else torch.from_numpy(values)
        forward = module.forward(x)
        grads = module.backward(forward, np.ones_like(values) if target == "numpy"
                                else torch.ones_like(x))
        dx = np.asarray(grads["x"])
        assert dx.dtype == np.float32 and np.asarray(forward["y"]).dtype == np.float32
        np.testing.assert_array_equal(dx, expected)  # 0 at -1 and 1, as torch's hardtanh
    text = document(program)
    assert r"\begin{cases}" in text and r"\text{otherwise}" in text


def test_activations_page_table_is_current(capsys):
    """docs/activations.md's table is what examples/activations/table.py prints now: the ops it
    shows are those the rules give today."""
    table = runpy.run_path(str(FOLDER / "table.py"), run_name="table")
    table["main"]()
    printed = capsys.readouterr().out.strip()
    page = (FOLDER.parent.parent / "docs" / "activations.md").read_text()
    assert printed in page, ("docs/activations.md's table is stale: paste what "
                             "examples/activations/table.py prints")


def pointwise(program: Program) -> sp.Expr:
    """The output (for a loss, its summand) as one expression of the reads of the inputs at
    [i, j]: every forward name read is replaced by its definition."""
    definitions = {s.name: s for s in program.body}
    expr = definitions[program.outputs[0]].rhs
    while True:
        expr = expr.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function)
        reads = [r for r in expr.atoms(sp.Indexed) if str(r.base.label) in definitions]
        if not reads:
            return expr
        expr = expr.xreplace({r: definitions[str(r.base.label)].rhs.xreplace(dict(zip(
            definitions[str(r.base.label)].lhs.indices, r.indices))) for r in reads})


def kink_arguments(expr: sp.Expr):
    """What is zero at a kink: the argument of a step, sign or magnitude, the difference of two
    arguments of a Max or Min, the two sides of a Piecewise condition."""
    for e in sp.preorder_traversal(expr):
        if isinstance(e, (sp.Heaviside, sp.sign, sp.Abs)):
            yield e.args[0]
        elif isinstance(e, (sp.Max, sp.Min)):
            yield from (a - b for a in e.args for b in e.args if a != b)
        elif isinstance(e, Piecewise):
            for _, condition in e.args:
                for relation in condition.atoms(sp.core.relational.Relational):
                    yield relation.lhs - relation.rhs


def kinks(program: Program) -> list:
    """The values of x at which the function has a kink, every other input at 1 and the constants
    at their values."""
    at = sp.Symbol("x", real=True)
    expr = pointwise(program)
    reads = {r: at if str(r.base.label) == "x" else sp.Integer(1) for r in expr.atoms(sp.Indexed)}
    constants = {symbol: sp.nsimplify(value) for symbol, value in program.constants}
    found = set()
    for argument in kink_arguments(expr):
        argument = argument.xreplace(reads).xreplace(constants)
        if argument.has(at):
            found |= {sp.nsimplify(root) for root in sp.solve(argument, at) if root.is_real}
    return sorted(found)


def gradients_at_kinks(program: Program, points: list) -> dict[str, torch.Tensor]:
    """d(output)/dx at each point, by the emitted torch and NumPy modules and by autograd through
    the declared torch reference; for a loss, per element (times the number of elements)."""
    x = torch.tensor([float(p) for p in points], dtype=torch.float64).reshape(-1, 1)
    inputs = {v.name: x if v.name == "x" else torch.ones_like(x) for v in program.inputs}
    derived = derive_backward(program)
    found = {}
    for target in ("torch", "numpy"):
        module = load_module(module_source(program, derived, target, double=False),
                             f"{program.name}_{target}_kinks")
        given = inputs if target == "torch" else {k: v.numpy() for k, v in inputs.items()}
        upstream = [] if program.loss else [torch.ones_like(x) if target == "torch"
                                            else np.ones(x.shape)]
        grads = module.backward(module.forward(*given.values()), *upstream)
        found[target] = torch.as_tensor(grads["x"]).reshape(-1)
    (function,) = [f for kind, _, f in program.references if kind == "forward"]
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    output = function(*leaves.values())
    output.backward(None if program.loss else torch.ones_like(output))
    found["reference"] = leaves["x"].grad.reshape(-1)
    scale = len(points) if program.loss else 1
    return {key: value * scale for key, value in found.items()}


def kinks_where_torch_differs() -> list[tuple[str, object, float, float]]:
    """``(file, x, derived, torch)`` at every kink of every activation and loss where the derived
    gradient (the same in both targets) is not torch's."""
    rows = []
    for name in NAMES:
        program = load(FOLDER / f"{name}.py")
        points = kinks(program)
        if not points:
            continue
        found = gradients_at_kinks(program, points)
        torch.testing.assert_close(found["numpy"], found["torch"], rtol=1e-12, atol=1e-12)
        for point, ours, theirs in zip(points, found["torch"], found["reference"]):
            if not torch.isclose(ours, theirs, rtol=1e-9, atol=1e-12):
                rows.append((name, point, float(ours), float(theirs)))
    return rows


def kink_table(rows) -> str:
    """docs/activations.md's list of the kinks where the derived gradient is not torch's."""
    version = torch.__version__.split("+")[0]
    lines = [f"Measured against torch {version} by `tests/test_activations.py`, which evaluates "
             "every file's", "emitted gradient at each of its kinks (any other input at 1), they "
             "differ at exactly these:", "", "| file | at x | derived gradient | torch |",
             "|---|---|---|---|"]
    lines += [f"| `{name}` | {point} | {ours:.4g} | {theirs:.4g} |"
              for name, point, ours, theirs in rows]
    return "\n".join(lines)


def test_kinks_are_found_where_the_functions_bend():
    assert kinks(load(FOLDER / "hardswish.py")) == [-3, 3]
    assert kinks(load(FOLDER / "huber_loss.py")) == [0, 1, 2]  # |x - t| = delta, with t = 1
    assert kinks(load(FOLDER / "softplus.py")) == []


def test_activations_page_lists_exactly_the_kinks_where_torch_differs():
    """docs/activations.md's list of convention differences at kinks is what the pinned torch
    gives."""
    table = kink_table(kinks_where_torch_differs())
    page = (FOLDER.parent.parent / "docs" / "activations.md").read_text()
    assert table in page, f"docs/activations.md's list of kinks is stale; it should read:\n{table}"
