"""Recognising hand-written forms at build time: a statement written with ``1/(1 + exp(-u))``,
``exp(u)/(1 + exp(u))``, ``log(1 + exp(u))``, ``-log(1 + exp(-u))`` or ``log(sigmoid(u))`` is
rewritten, for any argument ``u``, into the named stable functions of the op table (``sigmoid``,
``softplus``, ``log_sigmoid``), whose forward and derivative stay finite where the written-out form
overflows (``exp(100)`` in float32). Each rewrite is a named ``Rule`` whose side condition is that
it is an identity for every real argument (``1 + exp(u) > 0``), so the recognised statement is the
same function; every application is recorded as a ``Rewrite``. A ``sympy.Piecewise`` is kept as
``ops.Piecewise`` here too, before anything builds a ``Sum`` around it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .ops import as_piecewise, log1p, log_sigmoid, sigmoid, softplus


@dataclass(frozen=True)
class Rule:
    """A named rewrite of one node: ``apply(node)`` is the replacement, or None where the rule
    does not match; ``condition`` says why the two are the same function."""

    name: str
    apply: Callable[[sp.Expr], sp.Expr | None]
    condition: str


@dataclass(frozen=True)
class Rewrite:
    """One recognition in a statement: the rule, and the node before and after."""

    statement: str
    rule: str
    before: sp.Expr
    after: sp.Expr


def _one_plus_exp(expr: sp.Expr) -> sp.Expr | None:
    """``v`` when ``expr`` is ``1 + exp(v)``, else None."""
    if isinstance(expr, sp.Add) and len(expr.args) == 2 and sp.S.One in expr.args:
        (other,) = [a for a in expr.args if a != 1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def logistic_power(node: sp.Expr) -> sp.Expr | None:
    """``(1 + exp(v))**p -> sigmoid(-v)**(-p)`` for a negative constant ``p``:
    ``1/(1 + exp(-x)) -> sigmoid(x)``."""
    if isinstance(node, sp.Pow) and node.exp.is_number and node.exp.is_negative:
        v = _one_plus_exp(node.base)
        if v is not None:
            return sigmoid(-v) if node.exp == -1 else sigmoid(-v) ** -node.exp
    return None


def logistic_ratio(node: sp.Expr) -> sp.Expr | None:
    """``exp(u) * sigmoid(-u) -> sigmoid(u)``: ``exp(x)/(1 + exp(x))``, once its denominator is
    recognised, is the logistic function of ``x``."""
    if not isinstance(node, sp.Mul):
        return None
    factors = list(node.args)
    for a in factors:
        if isinstance(a, sp.exp) and sigmoid(-a.args[0]) in factors:
            rest = [f for f in factors if f not in (a, sigmoid(-a.args[0]))]
            return sp.Mul(*rest) * sigmoid(a.args[0])
    return None


def log_one_plus_exp(node: sp.Expr) -> sp.Expr | None:
    """``log(1 + exp(u)) -> softplus(u)`` (and ``log1p(exp(u))``)."""
    if isinstance(node, sp.log):
        u = _one_plus_exp(node.args[0])
        return softplus(u) if u is not None else None
    if isinstance(node, log1p) and isinstance(node.args[0], sp.exp):
        return softplus(node.args[0].args[0])
    return None


def log_of_sigmoid(node: sp.Expr) -> sp.Expr | None:
    """``log(sigmoid(u)) -> log_sigmoid(u)``."""
    if isinstance(node, sp.log) and isinstance(node.args[0], sigmoid):
        return log_sigmoid(node.args[0].args[0])
    return None


def negated_softplus(node: sp.Expr) -> sp.Expr | None:
    """``-softplus(-u) -> log_sigmoid(u)``: ``-log(1 + exp(-x))`` once its log is recognised."""
    if isinstance(node, sp.Mul) and sp.S.NegativeOne in node.args:
        rest = [a for a in node.args if a != -1]
        if len(rest) == 1 and isinstance(rest[0], softplus):
            return log_sigmoid(-rest[0].args[0])
    return None


IDENTITY = "none: an identity for every real argument"
RULES = (
    Rule("logistic", logistic_power, IDENTITY + " (1 + exp(v) = 1/sigmoid(-v) > 0, so any power "
         "of it is the opposite power of sigmoid(-v))"),
    Rule("logistic ratio", logistic_ratio, IDENTITY + " (exp(u)*sigmoid(-u) = exp(u)/(1 + exp(u)) "
         "= 1/(exp(-u) + 1), dividing by exp(u) > 0)"),
    Rule("softplus", log_one_plus_exp, IDENTITY + " (softplus is defined as log(1 + exp(u)))"),
    Rule("log-sigmoid", log_of_sigmoid, IDENTITY + " (log_sigmoid is defined as log(sigmoid(u)))"),
    Rule("log-sigmoid of softplus", negated_softplus, IDENTITY + " (-softplus(-u) = "
         "-log(1 + exp(-u)) = log(sigmoid(u)))"),
)


def recognise(expr: sp.Expr, statement: str = "") -> tuple[sp.Expr, list[Rewrite]]:
    """``expr`` with the stable named functions in place of their written-out forms, innermost
    first, and the rewrites made.

    >>> x = sp.IndexedBase("x")[sp.Idx("i", 4)]
    >>> recognise(x / (1 + sp.exp(-x)))[0]
    sigmoid(x[i])*x[i]
    >>> recognise(-sp.log(1 + sp.exp(-x)))[0]
    log_sigmoid(x[i])
    """
    done: list[Rewrite] = []

    def visit(node: sp.Expr) -> sp.Expr:
        if node.args and not isinstance(node, (sp.Indexed, sp.Idx)):
            args = [visit(a) if isinstance(a, sp.Expr) else a for a in node.args]
            if args != list(node.args):
                node = node.func(*args)
        changed = True
        while changed:
            changed = False
            for rule in RULES:
                after = rule.apply(node)
                if after is not None:
                    done.append(Rewrite(statement, rule.name, node, after))
                    node, changed = after, True
                    break
        return node

    return visit(as_piecewise(expr)), done


__all__ = ["RULES", "Rewrite", "Rule", "recognise"]
