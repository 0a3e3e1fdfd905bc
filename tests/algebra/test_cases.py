"""Case splits of one variable (symderive/cases.py) and the ``cases`` rule: the split is the same
function everywhere, breakpoints included, and anything undecidable is refused."""
import itertools
import random

import pytest
import sympy as sp

from symderive.algebra.cases import as_cases, split, variables
from symderive.program.ops import Piecewise, as_piecewise

n = sp.Symbol("n", integer=True, positive=True)
i = sp.Idx("i", n)
X = sp.IndexedBase("x")[i]
DY = sp.IndexedBase("dy")[i]
T = sp.IndexedBase("t")[i]
slope = sp.Symbol("slope")
delta = sp.Symbol("delta", positive=True)
free = sp.Symbol("free")  # no assumptions: its sign is unknown


def value_at(expr, at: dict):
    """The value of ``expr`` at a point, kinks evaluated by SymPy itself (our Piecewise read as
    SymPy's)."""
    plain = expr.replace(lambda e: isinstance(e, Piecewise), lambda e: sp.Piecewise(*e.args))
    return sp.nsimplify(plain.xreplace(at))


LEAKY = slope * sp.Heaviside(-X, 1) * DY + sp.Heaviside(X, 0) * DY
CELU = (sp.exp(sp.Min(0, X)) * sp.Heaviside(-X, 1) + sp.Heaviside(X, 0)) * DY
HUBER = (delta + (-delta + sp.Min(sp.Abs(X), delta)) * sp.Heaviside(delta - sp.Abs(X), 1)) \
    * sp.sign(X)
HARDSWISH = (sp.Heaviside(3 - X, 1) * sp.Heaviside(X + 3, 0) * X
             + sp.Min(6, sp.Max(0, X + 3))) * DY / 6
STEPS = sp.Heaviside(X - 1, 0) - sp.Heaviside(X + 2, sp.S.Half) * sp.sign(X) + sp.Abs(X - 1) * 3
CASE = as_piecewise(sp.Piecewise((X, sp.Abs(X) <= delta), (delta * sp.sign(X), True)))
DECREASING = sp.Max(-1, sp.Min(1, -X))  # the middle piece falls: no clamp of -x
EXAMPLES = {"leaky": LEAKY, "celu": CELU, "huber": HUBER, "hardswish": HARDSWISH,
            "steps": STEPS, "case": CASE, "decreasing": DECREASING}


def forms(expr):
    pieces = split(expr, X)
    assert pieces is not None
    return as_cases(pieces, X)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_form_takes_the_same_values_at_and_between_the_breakpoints(name):
    expr = EXAMPLES[name]
    points = [sp.Rational(k, 4) for k in range(-20, 21)]  # every breakpoint here is on this grid
    rng = random.Random(name)
    for form in forms(expr):
        for at, d in itertools.product(points, [2, delta]):
            env = {X: at, DY: sp.Rational(rng.randint(1, 9), 7), slope: sp.Rational(1, 10)}
            env = {k: v.xreplace({delta: 2}) for k, v in env.items()}
            assert value_at(expr.xreplace({delta: 2}), env) == \
                value_at(form.xreplace({delta: 2}), env), (name, form, at)


def test_leaky_relu_is_one_two_branch_case():
    (form,) = forms(LEAKY)
    assert form == Piecewise((slope * DY, X <= 0), (DY, True))


def test_a_clip_is_a_clamp_only_where_its_ties_take_the_branches_of_the_pieces():
    """``Max(lo, Min(hi, v))`` takes ``v``'s branch at ``hi`` and the constant's at ``lo`` (the op
    table's ties), so pieces that agree are a clamp; huber's derivative takes the middle branch
    at both breakpoints (Min's tie in ``Min(|x|, delta)``) and stays a Piecewise, so no derivative
    at its kinks changes (of any order). At 0 it is ``|x|*sign(x)``'s branch there, 0 (sign(0)
    = 0, abs'(0) = 0: its derivative at 0 is 0, as autograd of that formula gives), a piece of
    its own: a value that only reaches the neighbours' would give 0 their derivative 1."""
    clip = sp.Max(-delta, sp.Min(delta, X))
    assert forms(clip)[0] == clip
    assert forms(HUBER) == [Piecewise((-delta, X < -delta), (X, X < 0), (0, X <= 0),
                                      (X, X <= delta), (delta, True))]
    assert all(not isinstance(f, (sp.Max, sp.Min)) for f in forms(DECREASING))


def test_pieces_merge_only_where_values_meet():
    pieces = split(HARDSWISH, X)
    assert [(p.upper, p.closed) for p in pieces] == [(-3, True), (3, True), (None, False)]
    assert sp.expand(pieces[1].value - (2 * X + 3) * DY / 6) == 0


@pytest.mark.parametrize("expr", [
    sp.Heaviside(X - free, 0) + sp.Heaviside(X + free, 0),  # -free < free is not known
    sp.Heaviside(X**2 - 1, 0),  # not linear in x
    sp.Heaviside(free * X, 0),  # a coefficient of unknown sign
    sp.Heaviside(X - T, 0),  # a breakpoint that is an array
    as_piecewise(sp.Piecewise((X, T > 0), (0, True))),  # a condition on another array
], ids=["order", "nonlinear", "coefficient", "array-breakpoint", "other-condition"])
def test_undecidable_splits_are_refused(expr):
    assert split(expr, X) is None


def test_variables_are_the_reads_inside_kinks():
    assert variables(HUBER) == [X]
    assert variables(sp.exp(X) * DY) == []


def test_the_rule_gives_the_textbook_forms_of_the_examples(root):
    """leaky_relu, celu and huber from examples/activations come out in the textbook forms."""
    import runpy

    from symderive.algebra.simplify import compact_gradients

    want = {"leaky_relu": "Piecewise((slope, x[i, j] <= 0), (1, True))*dy[i, j]",
            "celu": "Piecewise((exp(x[i, j]/alpha), x[i, j] <= 0), (1, True))*dy[i, j]",
            "huber_loss": "Piecewise((-delta, r[i, j] < -delta), (r[i, j], r[i, j] < 0), "
                          "(0, r[i, j] <= 0), (r[i, j], r[i, j] <= delta), (delta, True))/(d*n)"}
    for name, text in want.items():
        program = runpy.run_path(str(root / "examples" / "activations" / f"{name}.py"))["program"]
        (gradient,) = [g for g in compact_gradients(program) if g.name == "x"]
        assert str(gradient.expr) == text, name


def test_max_and_min_against_a_constant_take_the_left_derivative():
    """Written as Max + Min, leaky_relu has torch's slope at 0 and celu its derivative 1 (strict
    steps on both sides would give 0, which is no subgradient of either)."""
    import torch
    import torch.nn.functional as F

    from symderive.algebra.grad import partial

    for written, torch_function in ((sp.Max(X, 0) + sp.Rational(1, 100) * sp.Min(X, 0),
                                     lambda v: F.leaky_relu(v, 0.01)),
                                    (sp.Max(X, 0) + sp.exp(sp.Min(X, 0)) - 1, F.celu)):
        derivative = partial(written, "x", (i,)).xreplace({sp.KroneckerDelta(i, i): 1})
        at_zero = torch.zeros((), dtype=torch.float64, requires_grad=True)
        torch_function(at_zero).backward()
        assert float(derivative.subs(X, 0)) == pytest.approx(at_zero.grad.item())


@pytest.mark.parametrize("name", ["leaky_relu", "celu", "hardswish", "huber_loss",
                                  "smooth_l1_piecewise"])
def test_case_split_gradients_are_twice_differentiable(root, name):
    """The emitted Function of a gradient written as a case split passes gradcheck and, through
    its derived double backward, gradgradcheck (the case split's branches are differentiated
    again like any Piecewise)."""
    import torch

    from symderive.algebra.simplify import derive_backward
    from symderive.codegen.emit import module_source
    from symderive.program.load import load
    from symderive.verify.check import load_module

    from ..codegen.test_function import leaves_of

    program = load(root / "examples" / "activations" / f"{name}.py")
    source = module_source(program, derive_backward(program), "torch")
    module = load_module(source, f"{program.name}_cases")
    assert hasattr(module, "double_backward"), source
    leaves = leaves_of(program)
    entry = getattr(module, program.name)
    assert torch.autograd.gradcheck(entry, leaves)
    assert torch.autograd.gradgradcheck(entry, leaves)


def random_kink_expression(rng: random.Random, depth: int = 2):
    """A random function of x built from steps, signs, magnitudes, clips and cases of linear
    arguments with rational breakpoints (some of them offset by the positive ``delta``)."""
    def linear():
        k = rng.choice([1, -1, 2, sp.Rational(-1, 2), 3])
        c = rng.choice([0, 1, -1, 2, sp.Rational(1, 2), delta, -delta])
        return k * X + c

    def leaf():
        return rng.choice([X, DY, sp.Integer(rng.randint(-2, 2)), slope, X * DY, delta])

    def node(level):
        if level == 0:
            return leaf()
        kind = rng.randrange(8)
        if kind == 0:
            return sp.Heaviside(linear(), rng.choice([0, 1, sp.S.Half]))
        if kind == 1:
            return sp.sign(linear())
        if kind == 2:
            return sp.Abs(linear())
        if kind == 3:
            return sp.Max(linear(), rng.choice([0, -1, delta, node(level - 1)]))
        if kind == 4:
            return sp.Min(linear(), rng.choice([0, 2, -delta, node(level - 1)]))
        if kind == 5:
            cut = rng.choice([0, 1, -1, delta])
            op = rng.choice([sp.Lt, sp.Le, sp.Gt, sp.Ge])
            return as_piecewise(sp.Piecewise((node(level - 1), op(X, cut)),
                                             (node(level - 1), True)))
        if kind == 6:
            return node(level - 1) * node(level - 1)
        return node(level - 1) + node(level - 1)

    return sum((node(depth) * leaf() for _ in range(rng.randint(1, 3))), sp.S.Zero)


def test_random_case_splits_take_the_same_values_everywhere():
    """Property: for random sums of kinks, every form the split offers equals the expression at
    every breakpoint and between them (exact rational arithmetic, delta = 3/2); refusals are
    allowed, wrong values are not. Derandomised: 120 expressions from fixed seeds."""
    checked = 0
    for seed in range(120):
        rng = random.Random(seed)
        expr = random_kink_expression(rng)
        pieces = split(expr, X) if expr.has(X) else None
        if pieces is None:
            continue
        checked += 1
        constants = {DY: sp.Rational(5, 7), slope: sp.Rational(1, 10), delta: sp.Rational(3, 2)}
        grid = sorted({sp.Rational(k, 4) for k in range(-16, 17)}
                      | {p.upper.xreplace(constants) for p in pieces if p.upper is not None})
        for form in as_cases(pieces, X):
            for at in grid:
                env = constants | {X: at}
                want = value_at(expr.xreplace({delta: constants[delta]}), env)
                got = value_at(form.xreplace({delta: constants[delta]}), env)
                assert want == got, (seed, expr, form, at)
    assert checked > 40  # the property is exercised, not refused away


def test_a_middle_piece_holding_another_case_is_split_without_a_clamp():
    """A middle piece whose value holds a case of another array is not linear with constant
    coefficients: no clamp, and no attempt to differentiate the inner Piecewise (SymPy cannot;
    the long fuzz found the crash). The Piecewise written instead keeps every value."""
    other = as_piecewise(sp.Piecewise((1, T > 0), (delta, True)))
    expr = as_piecewise(sp.Piecewise((-1, X <= -1), (1, X >= 1), (X * other, True)))
    (form,) = forms(expr)
    for x_value, t_value in itertools.product((-2, -1, sp.Rational(-1, 3), 0, 1, 3), (-1, 2)):
        at = {X: x_value, T: t_value, delta: sp.Rational(1, 2)}
        assert value_at(form, at) == value_at(expr, at)


def test_a_program_whose_gradient_splits_on_one_read_inside_another_checks():
    """The long fuzz's program: a clip of one value whose pieces hold a case of another."""
    from symderive import Builder, normal
    from symderive.verify.check import run_check

    d = sp.Symbol("d", integer=True, positive=True)
    eps = sp.Symbol("eps", positive=True)
    k, j = sp.Idx("k", n), sp.Idx("j", d)
    x, a0, a1, a2, a3 = (sp.IndexedBase(name) for name in ("x", "a0", "a1", "a2", "a3"))
    f = Builder("fuzz", sizes={n: 4, d: 3}, constants={eps: 0.5})
    f.input(x[k, j], normal(1.0))
    f[a0[k, j]] = sp.exp(2 * sp.tanh(x[k, j]))
    f[a1[k, j]] = sp.exp(2 * sp.tanh(a0[k, j]))
    f[a2[k, j]] = sp.Piecewise((-1, a1[k, j] <= -1), (1, a1[k, j] >= 1), (a1[k, j], True))
    f[a3[k, j]] = sp.Piecewise((a0[k, j], a0[k, j] > 0), (eps * a0[k, j], True))
    f.output(a1, a3, a2)
    report = run_check(f.build(), "float64")
    assert report.ok, report


@pytest.mark.parametrize("name, kink", [("smooth_l1_piecewise", 0.5), ("huber_piecewise", 1.0),
                                        ("smooth_l1_loss", 0.5), ("huber_loss", 1.0)])
def test_second_derivatives_at_the_kinks_keep_the_convention(root, name, kink):
    """Twice through the emitted Function at both kinks: a Piecewise's derivatives of every order
    are those of the branch its conditions select (smooth-l1 and huber written as torch writes
    them, |r| < beta in the quadratic branch: 0 at both kinks, as torch twice); written with
    Min(|r|, beta), Min's tie takes |r|, the quadratic branch, at both kinks. Before, the case
    split wrote a clamp whose Max and Min ties then chose one branch at each end."""
    import torch
    import torch.nn.functional as F

    from symderive.algebra.simplify import derive_backward
    from symderive.codegen.emit import module_source
    from symderive.program.load import load
    from symderive.verify.check import load_module

    program = load(root / "examples" / "activations" / f"{name}.py")
    module = load_module(module_source(program, derive_backward(program), "torch"), name)
    scale = 1 / kink if "smooth" in name else 1.0  # 1/beta or 1 in the quadratic branch
    torch_twice = {"smooth": lambda x, t: F.smooth_l1_loss(x, t, beta=kink),
                   "huber": lambda x, t: F.huber_loss(x, t, delta=kink)}[name.split("_")[0]]
    for at in (kink, -kink):
        seconds = []
        for function in (getattr(module, name), torch_twice):
            x = torch.tensor([[at]], dtype=torch.float64, requires_grad=True)
            (first,) = torch.autograd.grad(function(x, torch.zeros_like(x)), x, create_graph=True)
            seconds.append(torch.autograd.grad(first.sum(), x)[0].item())
        ours, torchs = seconds
        assert ours == (torchs if name.endswith("piecewise") else scale), (at, ours, torchs)
