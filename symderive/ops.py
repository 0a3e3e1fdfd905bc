"""The one table of derivative rules: every elementwise function symderive can differentiate, with its
partial derivatives next to its NumPy, torch and LaTeX spellings, plus the two index reductions that
are not SymPy functions (``Maximum`` over an index and the ``ArgMax`` its adjoint routes to).

A rule receives the op's output ``y`` and its arguments and returns one partial derivative per
argument, so ``exp`` and ``tanh`` can reuse the saved forward value as hand-written kernels do.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits


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
}


def op_for(expr: sp.Expr) -> Op | None:
    """The table row for a function application or power, or None if symderive has no rule."""
    return OPS.get(type(expr))


def known_names() -> str:
    return ", ".join(sorted(op.name for op in OPS.values()))
