"""What a program establishes about the sign of its values, for the rewrite rules whose side
condition is a sign: ``(a**b)**c -> a**(b*c)`` holds for every real ``a`` only when ``c`` is an
integer, and otherwise needs ``a >= 0``. Every value is real, so ``exp(u)``, ``cosh(u)``, even
powers, ``Abs``, ``sigmoid``, ``softplus`` and a ``Heaviside`` step (with a non-negative value at 0)
are non-negative whatever their arguments; a ``Max`` is when one argument is, a ``Min`` when both are; sums, products, powers and maxima of
non-negative values are too; a symbol or array is when SymPy's assumptions declare it
(``symbols("eps", positive=True)``, ``IndexedBase("x", nonnegative=True)``), and a forward name
is when its own definition is. Nothing is assumed: an unknown sign is not non-negative.
"""
from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from .ops import Maximum, sigmoid, softplus

# Functions whose value is non-negative for every real argument.
_NONNEGATIVE_FUNCTIONS = (sp.exp, sp.cosh, sp.Abs, sigmoid, softplus)


def _declared_name(expr: sp.Expr) -> str | None:
    if isinstance(expr, sp.Indexed):
        return str(expr.base.label)
    if isinstance(expr, sp.Symbol):
        return expr.name
    return None


def nonnegative(expr: sp.Expr, names: Mapping[str, bool] = {}) -> bool:  # noqa: B006 (read only)
    """True when ``expr >= 0`` wherever it is defined, as far as the program establishes it;
    ``names`` says which forward names are (their definitions were found non-negative).

    >>> from sympy import IndexedBase, Idx, exp, symbols
    >>> i = Idx("i", symbols("n", integer=True, positive=True))
    >>> x = IndexedBase("x")
    >>> nonnegative(x[i]**2 + 1), nonnegative(exp(x[i])), nonnegative(x[i])
    (True, True, False)
    """
    if not expr.has(sp.Indexed) and expr.is_extended_real and expr.is_nonnegative:
        return True  # numbers, sizes and constants, by SymPy's assumptions (n - 1 for n >= 1)
    name = _declared_name(expr)
    if name is not None:
        return bool(names.get(name) or expr.is_nonnegative)
    if isinstance(expr, sp.KroneckerDelta):
        return True  # 0 or 1
    if isinstance(expr, _NONNEGATIVE_FUNCTIONS):
        return True
    if isinstance(expr, sp.Heaviside):  # 0, 1 or its value at 0
        return len(expr.args) < 2 or bool(expr.args[1].is_nonnegative)
    if isinstance(expr, sp.Max):
        return any(nonnegative(arg, names) for arg in expr.args)
    if isinstance(expr, sp.Min):
        return all(nonnegative(arg, names) for arg in expr.args)
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        return bool(exponent.is_integer and exponent.is_even) or nonnegative(base, names)
    if isinstance(expr, (sp.Add, sp.Mul)):
        return all(nonnegative(arg, names) for arg in expr.args)
    if isinstance(expr, (sp.Sum, Maximum)):
        return nonnegative(expr.function, names)
    return False


# Functions whose value is positive for every real argument.
_POSITIVE_FUNCTIONS = (sp.exp, sp.cosh, sigmoid, softplus)


def positive(expr: sp.Expr, names: Mapping[str, bool] = {},  # noqa: B006 (read only)
             nonnegative_names: Mapping[str, bool] = {}) -> bool:  # noqa: B006
    """True when ``expr > 0`` wherever it is defined, as far as the program establishes it:
    ``exp``, ``cosh``, ``sigmoid``, ``softplus``, declared positive symbols and arrays, a sum of
    non-negative values one of which is positive (``v + eps``), products and powers of positive
    values; ``names`` says which forward names are positive, ``nonnegative_names`` which are
    non-negative. A non-negative value that can be 0 is not positive: a fractional power of it
    has an infinite derivative there (``sqrt`` at 0).

    >>> from sympy import IndexedBase, Idx, Max, exp, symbols
    >>> i = Idx("i", symbols("n", integer=True, positive=True))
    >>> x, eps = IndexedBase("x"), symbols("eps", positive=True)
    >>> positive(x[i]**2 + eps), positive(exp(x[i])), positive(Max(x[i], 0))
    (True, True, False)
    """
    if not expr.has(sp.Indexed) and expr.is_extended_real and expr.is_positive:
        return True
    name = _declared_name(expr)
    if name is not None:
        return bool(names.get(name) or expr.is_positive)
    if isinstance(expr, _POSITIVE_FUNCTIONS):
        return True
    if isinstance(expr, sp.Max):
        return any(positive(arg, names, nonnegative_names) for arg in expr.args)
    if isinstance(expr, sp.Min):
        return all(positive(arg, names, nonnegative_names) for arg in expr.args)
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        return positive(base, names, nonnegative_names)
    if isinstance(expr, sp.Mul):
        return all(positive(arg, names, nonnegative_names) for arg in expr.args)
    if isinstance(expr, sp.Add):
        return all(nonnegative(arg, nonnegative_names) for arg in expr.args) and \
            any(positive(arg, names, nonnegative_names) for arg in expr.args)
    if isinstance(expr, (sp.Sum, Maximum)):
        return positive(expr.function, names, nonnegative_names)
    return False


def program_signs(program) -> dict[str, bool]:
    """For every name of ``program``, whether it is established non-negative: inputs by their
    declared assumptions, statements by their definitions, in order (a later statement may rest
    on an earlier name). An accumulated statement must keep the sign too."""
    signs: dict[str, bool] = {}
    for x in program.inputs:
        signs[x.name] = bool(x.lhs.is_nonnegative)
    for statement in program.body:
        found = nonnegative(statement.rhs, signs)
        signs[statement.name] = found and signs.get(statement.name, True) \
            if statement.accumulate else found
    return signs


def program_positives(program, signs: dict[str, bool]) -> dict[str, bool]:
    """For every name of ``program``, whether it is established positive (``signs``: which are
    non-negative, from ``program_signs``)."""
    found: dict[str, bool] = {}
    for x in program.inputs:
        found[x.name] = bool(x.lhs.is_positive)
    for statement in program.body:
        now = positive(statement.rhs, found, signs)
        found[statement.name] = now and found.get(statement.name, True) \
            if statement.accumulate else now
    return found
