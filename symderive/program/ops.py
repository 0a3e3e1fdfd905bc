"""The one table of derivative rules: every elementwise function symderive can differentiate, with its
partial derivatives next to its NumPy, torch and LaTeX spellings, plus the two index reductions that
are not SymPy functions (``Maximum`` over an index and the ``ArgMax`` its adjoint routes to).

A rule receives the op's output ``y`` and its arguments and returns one partial derivative per
argument, so ``exp`` and ``tanh`` can reuse the saved forward value as hand-written kernels do.

A spelling is a function name (``np.exp``, called with the arguments) or a template with ``{0}``,
``{1}`` (the printed arguments) and ``{p0}`` (argument 0 parenthesised unless it is a name or a
call), for stable forms that are not one call (``np.logaddexp(0, {0})``).

Subgradients at kinks: ``Max`` and ``Min`` against a constant take the derivative from the left
in their argument (the slope just below the kink), so ``relu'(0) = 0`` as torch, and a function
written as a sum of them keeps that: ``Max(x, 0) + slope*Min(x, 0)`` has torch's leaky_relu slope
at 0, and ELU, SELU and CELU written so have torch's values there (the derivative of a sum is the
sum of the one-sided derivatives; strict steps on both sides would give 0, no subgradient at all).
Where torch itself takes another side (hardtanh, relu6, hardsigmoid and hardswish at their upper
kink, where the left derivative is the inner branch's; the README lists them as measured), write
the function as a ``Piecewise`` to choose.
``torch.maximum``/``torch.minimum`` split a tie between two arrays 0.5/0.5, ``abs'(0) = sign(0) =
0``, and ``sign`` and ``Heaviside`` have derivative 0 everywhere (torch's ``sign`` backward is 0;
``Heaviside``'s second argument is its value at 0: SymPy's default 1/2, ``Heaviside(x, 0)`` or
``Heaviside(x, 1)`` for the steps the rules emit).

``Piecewise((v1, c1), (v2, c2), ..., (vk, True))`` takes the first branch whose condition holds;
each condition compares a value with a constant (``<``, ``<=``, ``>``, ``>=``, joined by ``&``
or ``|``).
Its derivative is the Piecewise of the branch derivatives under the same conditions
(``piecewise_partial``): at a boundary it is the derivative of the branch the conditions select
there, so the comparisons a derivation writes choose the kink's subgradient, as torch's kernels do
(``Piecewise((x, x > 0), (0, True))`` has relu's 0 at 0; hardtanh as torch writes ``x <= -1`` and
``x >= 1`` for its constant branches). The conditions themselves contribute nothing (their
derivative is 0 almost everywhere).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core.logic import fuzzy_and
from sympy.functions.elementary.piecewise import ExprCondPair


class Maximum(ExprWithLimits):
    """Maximum of an expression over a bound index, like ``Sum`` binds it.

    >>> from sympy import IndexedBase, Idx, symbols
    >>> n, V = symbols("n V", integer=True, positive=True)
    >>> i, c = Idx("i", n), Idx("c", V)
    >>> Maximum(IndexedBase("logits")[i, c], c)
    Maximum(logits[i, c], (c, 0, V - 1))
    """


class ArgMax(ExprWithLimits):
    """The index at which ``Maximum`` of the same arguments is attained; integer valued, it only
    appears inside a ``KroneckerDelta``, where it lowers to a one-hot row."""

    is_integer = True


def maximum_weight(summand: sp.Expr, index: sp.Idx, at: sp.Idx) -> sp.Expr:
    """Derivative of ``Maximum(summand, index)`` with respect to the summand at ``index = at``:
    the indicator of the argmax (ties go to the first maximum, as ``argmax`` and torch's
    ``max(dim)`` choose it)."""
    return sp.KroneckerDelta(at, ArgMax(summand, index))


class sigmoid(sp.Function):
    """The logistic function ``1/(1 + exp(-x))``; SymPy has none. Emitted in a stable form
    (``torch.sigmoid``; NumPy ``exp(-logaddexp(0, -x))``), never as ``1/(1 + exp(-x))``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        return self.args[0].is_extended_real


class softplus(sp.Function):
    """``log(1 + exp(x))``, emitted stably (``F.softplus``; NumPy ``logaddexp(0, x)``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        return self.args[0].is_extended_real


class log_sigmoid(sp.Function):
    """``log(sigmoid(x)) = -softplus(-x)``, emitted stably (``F.logsigmoid``; NumPy
    ``-logaddexp(0, -x)``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(-self.args[0])

    def _eval_evalf(self, prec):
        return (-sp.log(1 + sp.exp(-self.args[0])))._eval_evalf(prec)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real


def _step(a: sp.Expr, b: sp.Expr, at_tie: sp.Expr) -> sp.Expr:
    """The indicator of ``a > b`` as a ``Max``/``Min`` partial, ``at_tie`` where they are equal
    and one side is free of arrays (the left derivative: 0 for ``Max(x, c)``, as relu's in torch,
    1 for ``Min(x, c)``); 1/2 at a tie between two arrays, as ``torch.maximum`` and
    ``torch.minimum`` split it."""
    tie = sp.S.Half if a.has(sp.Indexed) and b.has(sp.Indexed) else at_tie
    return sp.Heaviside(a - b, tie)


class Piecewise(sp.Function):
    """SymPy's ``Piecewise`` as symderive keeps it, with the same ``(value, condition)`` pairs
    (``Builder`` converts one written with ``sympy.Piecewise``). It is a plain function of its
    branches because SymPy's ``Sum`` folds a ``sympy.Piecewise`` that uses its index into one
    Piecewise around the whole summand, which would hide the index deltas of a derivative inside
    the branches, where no rule can contract them. Branches of one value are that value.

    >>> x = sp.IndexedBase("x")[sp.Idx("i", 3)]
    >>> Piecewise(*sp.Piecewise((x, x > 0), (0, True)).args)
    Piecewise((x[i], x[i] > 0), (0, True))
    """

    is_commutative = True

    @classmethod
    def eval(cls, *pairs):
        if not all(isinstance(pair, ExprCondPair) for pair in pairs):  # Piecewise((x, x > 0), ...)
            return cls(*[ExprCondPair(*pair) for pair in pairs])
        # conditions a substitution decided (a read through a map, a case split): a branch that
        # never holds goes, and the first that always holds is the last one read
        kept = [pair for pair in pairs if pair.args[1] is not sp.false]
        always = next((k for k, pair in enumerate(kept) if pair.args[1] is sp.true), None)
        if always is not None:
            kept = kept[:always + 1]
        if kept and len(kept) != len(pairs):
            return cls(*kept)
        values = {pair.args[0] for pair in pairs}
        if len(values) == 1 and pairs[-1].args[1] is sp.true:  # else it has no value somewhere
            return values.pop()
        return None

    def _eval_is_extended_real(self):
        return fuzzy_and(pair.args[0].is_extended_real for pair in self.args)


def as_piecewise(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every ``sympy.Piecewise`` in it kept as symderive's ``Piecewise``."""
    if not expr.has(sp.Piecewise):
        return expr
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: Piecewise(*e.args))


# What a Piecewise condition may be built of: comparisons with a constant, joined by And or Or
# (SymPy itself joins the conditions of neighbouring branches of equal value by Or); True for
# the last branch.
COMPARISONS = (sp.StrictGreaterThan, sp.GreaterThan, sp.StrictLessThan, sp.LessThan)
CONDITION_NODES = frozenset({*COMPARISONS, sp.And, sp.Or, ExprCondPair, type(sp.true)})


def _comparisons(condition):
    if isinstance(condition, (sp.And, sp.Or)):
        return [c for arg in condition.args for c in _comparisons(arg)]
    return [condition]


def piecewise_problem(expr: Piecewise, constant: Callable[[sp.Expr], bool]) -> str | None:
    """Why ``expr`` is not a Piecewise symderive can differentiate (None if it is): every
    condition but the last compares a value with a constant (``constant(e)`` says which
    expressions are), alone or joined by ``&`` and ``|``; the last is ``True``, so every point
    has a value.

    >>> x = sp.IndexedBase("x")[sp.Idx("i", 3)]
    >>> piecewise_problem(Piecewise((x, x > 0), (0, True)), lambda e: e.is_number)
    >>> piecewise_problem(Piecewise((x, x > 0), (0, x <= 0)), lambda e: e.is_number)[:38]
    'the last branch of a Piecewise must be'
    """
    *pairs, (_, last) = expr.args
    if last is not sp.true:
        return (f"the last branch of a Piecewise must be (value, True), the value everywhere "
                f"else; '{expr}' has no value where {last} fails")
    for _, condition in pairs:
        for comparison in _comparisons(condition):
            if not isinstance(comparison, COMPARISONS):
                return (f"the condition '{condition}' of a Piecewise must compare a value with a "
                        "constant using <, <=, > or >= (several joined by & or |)")
            if constant(comparison.lhs) == constant(comparison.rhs):
                sides = comparison.lhs - comparison.rhs
                if sides.free_symbols and all(isinstance(x, sp.Idx) or x.is_integer for x in
                                              sides.free_symbols) and not sides.has(sp.Indexed):
                    return (f"the condition '{comparison}' compares indices: write that mask as a "
                            "factor, Heaviside(t - s, 1) for 1 where s <= t and 0 elsewhere "
                            "(Heaviside(t - s, 0) for s < t)")
                return (f"the condition '{comparison}' of a Piecewise must compare a value with "
                        "a constant (a number, size or named constant)")
    return None


def piecewise_partial(expr: Piecewise, name: str, at: tuple, partial: Callable) -> sp.Expr:
    """The derivative of ``expr`` with respect to ``name[at]``: the Piecewise of the branch
    derivatives under the same conditions, by ``partial`` (``grad.partial``). Each read of
    ``name`` outside any Sum is differentiated through once, so the index deltas stand outside
    the Piecewise where the rules contract them:
    ``d/dx[k] Piecewise((x[i], x[i] > 0), (a*x[i], True)) = Piecewise((1, x[i] > 0), (a, True)) *
    delta(i, k)``. A read under a Sum inside a branch is differentiated inside the branch.
    """
    def branches(derivative):
        return Piecewise(*[ExprCondPair(derivative(value), condition)
                           for value, condition in expr.args])

    values = [value for value, _ in expr.args]
    reads = []
    for value in values:
        labels = {base.label for base in value.atoms(sp.IndexedBase)}  # x of x[i] is no read
        reads += sorted([r for r in value.atoms(sp.Indexed) if str(r.base.label) == name] + [
            r for r in value.atoms(sp.Symbol) - labels if r.name == name], key=sp.default_sort_key)
    reads = list(dict.fromkeys(reads))
    bound = [s for value in values for s in value.atoms(ExprWithLimits)]
    if any(r in s.function.atoms(sp.Indexed, sp.Symbol) for r in reads for s in bound):
        return branches(lambda value: partial(value, name, at))
    # a placeholder name no derivation can use (names may not start with "_")
    point = sp.Symbol("_piecewise_read")
    total = []
    for read in reads:
        outer = branches(lambda value: partial(value.xreplace({read: point}), point.name, ())
                         .xreplace({point: read}))
        if outer != 0:
            total.append(outer * partial(read, name, at))
    return sp.Add(*total)


def _branchwise(y, *pairs):
    raise TypeError("a Piecewise has no partial per argument; it is differentiated branch by "
                    "branch (piecewise_partial)")


def _zeros(y, *args):
    return tuple(sp.S.Zero for _ in args)


# NumPy has no erf: math.erf elementwise, keeping the array's dtype (and a 0-d array's shape).
_NUMPY_ERF = "(lambda a: np.asarray(np.frompyfunc(math.erf, 1, 1)(a), np.result_type(a)))({0})"


@dataclass(frozen=True)
class Op:
    """One row of the table: partials ``(y, *args) -> tuple`` and how each target spells the op."""

    name: str
    partials: Callable[..., tuple[sp.Expr, ...]]
    numpy: str
    torch: str
    latex: str
    domain: tuple[float, float]  # where the finite-difference test samples the first argument


OPS: dict[type, Op] = {
    sp.exp: Op("exp", lambda y, x: (y,), "np.exp", "torch.exp", r"\exp", (-2.0, 2.0)),
    sp.log: Op("log", lambda y, x: (1 / x,), "np.log", "torch.log", r"\log", (0.2, 3.0)),
    sp.tanh: Op("tanh", lambda y, x: (1 - y**2,), "np.tanh", "torch.tanh", r"\tanh", (-2.0, 2.0)),
    sp.sin: Op("sin", lambda y, x: (sp.cos(x),), "np.sin", "torch.sin", r"\sin", (-3.0, 3.0)),
    sp.cos: Op("cos", lambda y, x: (-sp.sin(x),), "np.cos", "torch.cos", r"\cos", (-3.0, 3.0)),
    sp.sinh: Op("sinh", lambda y, x: (sp.cosh(x),), "np.sinh", "torch.sinh", r"\sinh", (-2.0, 2.0)),
    sp.cosh: Op("cosh", lambda y, x: (sp.sinh(x),), "np.cosh", "torch.cosh", r"\cosh", (-2.0, 2.0)),
    # Written with the base, not the output, so (v + eps)**(-1/2) differentiates to the notebook's
    # -1/2 * (v + eps)**(-3/2); the simplifier folds that power back into the forward name.
    sp.Pow: Op("pow", lambda y, b, p: (p * b ** (p - 1), y * sp.log(b)), "**", "**", "^", (0.3, 3.0)),
    # elementwise max/min of two values (arrays, or an array and a constant). Kinks against a
    # constant: the left derivative (relu = Max(x, 0) has 0 at 0, Min(x, 0) has 1); a tie between
    # two arrays splits 0.5/0.5. torch prints torch.clamp(x, min=c) against a constant
    # (torch.maximum takes tensors only).
    sp.Max: Op("max", lambda y, a, b: (_step(a, b, sp.S.Zero), _step(b, a, sp.S.Zero)),
               "np.maximum", "torch.maximum", r"\max", (-2.0, 2.0)),
    sp.Min: Op("min", lambda y, a, b: (_step(b, a, sp.S.One), _step(a, b, sp.S.One)),
               "np.minimum", "torch.minimum", r"\min", (-2.0, 2.0)),
    # |x|' = sign(x), 0 at 0 as torch.abs
    sp.Abs: Op("abs", lambda y, x: (sp.sign(x),), "np.abs", "torch.abs", r"\left|{0}\right|",
               (-2.0, 2.0)),
    # piecewise constant: derivative 0 everywhere (torch.sign's backward is 0; at 0 there is none)
    sp.sign: Op("sign", _zeros, "np.sign", "torch.sign", r"\operatorname{sign}", (-2.0, 2.0)),
    # Heaviside(x, h0): h0 is the value at 0 (SymPy's default 1/2; the Max/Min rules write 0 or
    # 1/2); derivative 0, as the step is a subgradient indicator here, not a distribution
    sp.Heaviside: Op("heaviside", _zeros, "np.heaviside", "torch.heaviside({0}, {p0}.new_tensor({1}))",
                     "H", (-2.0, 2.0)),
    # NumPy has no erf: math.erf elementwise (forward only; the derivative needs exp alone)
    sp.erf: Op("erf", lambda y, x: (2 / sp.sqrt(sp.pi) * sp.exp(-x**2),), _NUMPY_ERF, "torch.erf",
               r"\operatorname{erf}", (-2.0, 2.0)),
    # log1p on [0, 3]: the fuzzer applies an op with a domain of both signs to any moderate value
    log1p: Op("log1p", lambda y, x: (1 / (1 + x),), "np.log1p", "torch.log1p",
                 r"\operatorname{log1p}", (0.0, 3.0)),
    expm1: Op("expm1", lambda y, x: (y + 1,), "np.expm1", "torch.expm1", r"\operatorname{expm1}",
                 (-2.0, 2.0)),
    sp.atan: Op("atan", lambda y, x: (1 / (1 + x**2),), "np.arctan", "torch.atan", r"\arctan",
                (-3.0, 3.0)),
    # the named stable functions: finite forward and backward in float32 at +-100, float64 at +-800
    sigmoid: Op("sigmoid", lambda y, x: (y * (1 - y),), "np.exp(-np.logaddexp(0, -{p0}))",
                "torch.sigmoid", r"\sigma", (-3.0, 3.0)),
    softplus: Op("softplus", lambda y, x: (sigmoid(x),), "np.logaddexp(0, {0})", "F.softplus",
                 r"\operatorname{softplus}", (-3.0, 3.0)),
    log_sigmoid: Op("log_sigmoid", lambda y, x: (sigmoid(-x),), "(-np.logaddexp(0, -{p0}))",
                    "F.logsigmoid", r"\log\sigma", (-3.0, 3.0)),
    # Piecewise((v1, c1), ..., (vk, True)), conditions comparing a value with a constant: the
    # derivative is branch by branch (piecewise_partial, which grad.partial calls instead of the
    # partials here); printed as nested where and as a cases environment. Kinks: the branch the
    # conditions select at the boundary gives the subgradient there.
    Piecewise: Op("piecewise", _branchwise, "np.where", "torch.where", r"\begin{cases}",
                  (-2.0, 2.0)),
}


def op_for(expr: sp.Expr) -> Op | None:
    """The table row for a function application or power, or None if symderive has no rule."""
    return OPS.get(type(expr))


def known_names() -> str:
    return ", ".join(sorted(op.name for op in OPS.values()))
