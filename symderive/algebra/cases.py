"""Case splits of one variable: a sum of steps, signs, magnitudes, clips and cases of one array read
``a`` (``slope*Heaviside(-x, 1) + Heaviside(x, 0)``) is the same function of ``a`` as one
``Piecewise`` over the intervals its kinks cut the line into (``Piecewise((slope, x <= 0), (1,
True))``). ``split`` finds the kinks' breakpoints, orders them by what SymPy's assumptions prove,
evaluates every kink on each open interval and at each breakpoint (where each takes exactly one
branch), and merges neighbouring pieces whose values are identical; ``as_cases`` writes the pieces
as one Piecewise, or as a clamp ``Max(lo, Min(hi, v))`` where that is exactly the same function.
Anything it cannot decide (a breakpoint of unknown order, a kink argument not linear in ``a`` with
a coefficient of known sign, a condition on another array) is a refusal (``None``), never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from ..program.ops import Piecewise

KINKS = (sp.Heaviside, sp.sign, sp.Abs, sp.Max, sp.Min, Piecewise)
_MAX_BREAKPOINTS = 8


class _Refused(Exception):
    """The split cannot be decided; the caller keeps the expression as it is."""


class _NewBreakpoint(Exception):
    def __init__(self, root: sp.Expr):
        super().__init__(root)
        self.root = root


@dataclass(frozen=True)
class Piece:
    """``value`` for ``a`` up to ``upper`` (inclusive when ``closed``); the last piece has no
    upper bound."""

    value: sp.Expr
    upper: sp.Expr | None = None
    closed: bool = False


def _is_constant(expr: sp.Expr) -> bool:
    return not expr.has(sp.Indexed, sp.Idx)


def _sign(expr: sp.Expr) -> int:
    """-1, 0 or 1 as SymPy's assumptions prove; refused when they do not."""
    expr = sp.expand(expr)
    if expr.is_zero:
        return 0
    if expr.is_positive:
        return 1
    if expr.is_negative:
        return -1
    raise _Refused(f"the sign of {expr} is not known")


def _linear(u: sp.Expr, a: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """``(k, c)`` with ``u = k*a + c`` identically, ``k`` and ``c`` free of arrays."""
    if u.has(*KINKS) or u.atoms(sp.Indexed) - {a}:  # another read or a kink: not that (and
        raise _Refused(f"{u} is not linear in {a} with constant coefficients")  # no diff of it)
    k = sp.diff(u, a)
    c = sp.expand(u - k * a)
    if k.has(a) or c.has(a) or not (_is_constant(k) and _is_constant(c)) \
            or sp.expand(u - k * a - c) != 0:
        raise _Refused(f"{u} is not linear in {a} with constant coefficients")
    return k, c


class _Region:
    """An open interval between neighbouring breakpoints (``point`` False: below
    ``breakpoints[position]``, above the one before) or a breakpoint itself."""

    def __init__(self, a: sp.Expr, breakpoints: list, position: int, point: bool):
        self.a, self.breakpoints, self.position, self.point = a, breakpoints, position, point

    def sign(self, u: sp.Expr) -> int:
        """The sign of ``u`` (kink-free, linear in ``a``) everywhere in the region."""
        k, c = _linear(u, self.a)
        if sp.expand(k) == 0:
            return _sign(c)
        root = sp.expand(-c / k)
        where = [j for j, b in enumerate(self.breakpoints) if sp.expand(b - root) == 0]
        if not where:
            raise _NewBreakpoint(root)
        (j,) = where
        if self.point:
            side = (self.position > j) - (self.position < j)
        else:  # the interval lies above breakpoints[:position] and below the rest
            side = 1 if j < self.position else -1
        return _sign(k) * side

    def resolve(self, node: sp.Expr) -> sp.Expr:
        """``node`` with every kink of ``a`` replaced by the branch it takes in this region."""
        if not node.has(self.a) or not node.has(*KINKS):
            return node
        if isinstance(node, Piecewise):
            return self._case(node)
        node = node.func(*[self.resolve(arg) for arg in node.args])
        if not isinstance(node, KINKS) or not node.has(self.a):
            return node
        if isinstance(node, (sp.Max, sp.Min)):
            if len(node.args) != 2:
                raise _Refused(f"{node} has more than two arguments")
            p, q = node.args
            s = self.sign(p - q)
            arrays = [x for x in (p, q) if x.has(sp.Indexed)]
            if s == 0 and len(arrays) == 1:
                # a tie with a constant takes the branch the op table differentiates: Min's
                # derivative there is its array argument's, Max's the constant's (relu'(0) = 0)
                return arrays[0] if isinstance(node, sp.Min) else \
                    next(x for x in (p, q) if x is not arrays[0])
            return q if (s < 0) == isinstance(node, sp.Max) and s != 0 else p
        u = node.args[0]
        s = self.sign(u)
        if isinstance(node, sp.Heaviside):
            at_zero = node.args[1] if len(node.args) > 1 else sp.S.Half
            return {1: sp.S.One, -1: sp.S.Zero, 0: at_zero}[s]
        if isinstance(node, sp.sign):
            return sp.Integer(s)
        return {1: u, -1: -u, 0: sp.S.Zero}[s]  # Abs

    def _holds(self, condition) -> bool:
        if condition is sp.true or condition is sp.false:
            return bool(condition)
        if isinstance(condition, sp.And):
            return all(self._holds(c) for c in condition.args)
        if isinstance(condition, sp.Or):
            return any(self._holds(c) for c in condition.args)
        if not isinstance(condition, (sp.StrictGreaterThan, sp.GreaterThan, sp.StrictLessThan,
                                      sp.LessThan)):
            raise _Refused(f"the condition {condition} is not a comparison")
        s = self.sign(self.resolve(condition.lhs) - self.resolve(condition.rhs))
        return {sp.StrictGreaterThan: s > 0, sp.GreaterThan: s >= 0,
                sp.StrictLessThan: s < 0, sp.LessThan: s <= 0}[type(condition)]

    def _case(self, node: Piecewise) -> sp.Expr:
        for pair in node.args:
            value, condition = pair.args
            if self._holds(condition):  # the first branch that holds, as Piecewise reads
                return self.resolve(value)
        raise _Refused(f"no branch of {node} holds")


def _ordered(breakpoints: list, root: sp.Expr) -> list:
    if len(breakpoints) >= _MAX_BREAKPOINTS:
        raise _Refused("too many breakpoints")
    signs = [_sign(root - b) for b in breakpoints]
    if 0 in signs:  # equal to a breakpoint, though not structurally: refuse rather than guess
        raise _Refused(f"{root} equals a breakpoint")
    position = signs.count(1)
    return breakpoints[:position] + [root] + breakpoints[position:]


def _same(u: sp.Expr, v: sp.Expr) -> bool:
    """Identical values: the difference expands to 0 (no false positives; some misses)."""
    return u == v or sp.expand(u - v) == 0


def split(expr: sp.Expr, a: sp.Expr) -> list[Piece] | None:
    """The pieces of ``expr`` as a function of the array read ``a``, lowest first, neighbours of
    one value merged; None when the split cannot be decided."""
    breakpoints: list = []
    try:
        while True:
            try:
                intervals = [_Region(a, breakpoints, p, False).resolve(expr)
                             for p in range(len(breakpoints) + 1)]
                # the branch each breakpoint takes, as a function of a, and its value there
                branches = [_Region(a, breakpoints, p, True).resolve(expr)
                            for p in range(len(breakpoints))]
                points = [branch.xreplace({a: b}) for branch, b in zip(branches, breakpoints)]
                break
            except _NewBreakpoint as new:
                breakpoints = _ordered(breakpoints, new.root)
    except _Refused:
        return None
    if any(value.has(*KINKS) and any(k.has(a) for k in value.atoms(*KINKS))
           for value in intervals + points):
        return None
    if any(value.has(sp.nan, sp.zoo, sp.oo, -sp.oo) for value in intervals + points):
        return None
    # each breakpoint joins the interval whose branch it takes there (the same function of a, so
    # every derivative there is that interval's too), the one below first; else it stays a
    # piece of its own, with the branch it takes (a value that merely reaches a neighbour's
    # would give the breakpoint that neighbour's derivatives: the terms of a sum may each take
    # another side of one kink)
    pieces: list[Piece] = []
    for p, b in enumerate(breakpoints):
        below = intervals[p]
        if _same(below, branches[p]):
            pieces.append(Piece(below, b, True))
        elif _same(intervals[p + 1], branches[p]):
            pieces.append(Piece(below, b, False))
        else:
            pieces += [Piece(below, b, False), Piece(branches[p], b, True)]
    pieces.append(Piece(intervals[-1]))
    merged = [pieces[0]]
    for piece in pieces[1:]:
        if _same(merged[-1].value, piece.value):
            merged[-1] = Piece(merged[-1].value, piece.upper, piece.closed)
        else:
            merged.append(piece)
    return merged


def _condition(a: sp.Expr, piece: Piece):
    return sp.Le(a, piece.upper) if piece.closed else sp.Lt(a, piece.upper)


def _clamp(pieces: list[Piece], a: sp.Expr) -> sp.Expr | None:
    """``Max(lo, Min(hi, v))`` (or one side of it) when the pieces are constants around a value
    ``v = k*a + c`` with ``k > 0`` that meets each constant at its breakpoint: then ``v`` is below
    ``lo`` left of the lower breakpoint and above ``hi`` right of the upper one, so the clamp takes
    exactly the pieces' values. At a breakpoint its derivative is that of the branch the op table
    gives a tie (``Min(hi, v)`` takes ``v``'s, ``Max(lo, v)`` the constant's), so the clamp is
    written only where that is the branch the pieces select there: a rewrite never changes a
    derivative at a kink, of any order (smooth-l1's derivative is constant at both of its
    breakpoints, as torch's second derivative is 0 there, and stays a Piecewise)."""
    values = [piece.value for piece in pieces]
    middle = [p for p, v in enumerate(values) if v.has(a)]
    if len(middle) != 1 or len(pieces) not in (2, 3):
        return None
    (m,) = middle
    v = values[m]
    try:
        k, _ = _linear(v, a)
        if _sign(k) <= 0:
            return None
    except _Refused:
        return None
    if m + 1 < len(pieces) and not pieces[m].closed or m > 0 and not pieces[m - 1].closed:
        return None  # a tie would take the other branch than the pieces select (see above)
    result = v
    if m + 1 < len(pieces):  # a constant above
        if not _same(v.xreplace({a: pieces[m].upper}), values[m + 1]):
            return None
        result = sp.Min(values[m + 1], result)
    if m > 0:  # a constant below
        if not _same(v.xreplace({a: pieces[m - 1].upper}), values[m - 1]):
            return None
        result = sp.Max(values[m - 1], result)
    return result


def as_cases(pieces: list[Piece], a: sp.Expr) -> list[sp.Expr]:
    """The forms that write the pieces exactly: a clamp where one applies, and the Piecewise
    that tests the breakpoints from below."""
    if len(pieces) == 1:
        return [pieces[0].value]
    forms = [Piecewise(*[ExprCondPair(piece.value, _condition(a, piece)) for piece in pieces[:-1]],
                       ExprCondPair(pieces[-1].value, sp.true))]
    clamp = _clamp(pieces, a)
    if clamp is not None:
        forms.insert(0, clamp)
    return forms


def variables(expr: sp.Expr) -> list[sp.Expr]:
    """The array reads inside kinks of ``expr``: the candidates to split on."""
    found = set()
    for kink in expr.atoms(*KINKS):
        found |= kink.atoms(sp.Indexed)
    return sorted(found, key=sp.default_sort_key)


__all__ = ["KINKS", "Piece", "as_cases", "split", "variables"]
