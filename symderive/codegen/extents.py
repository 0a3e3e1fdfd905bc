"""The extent of lowered code (its shape, right-aligned for broadcasting) worked out from the
shapes of the arrays the programs name: what fusion decides by (a factor smaller than the
product is grouped, a term as large as the sum is updated in place), and what the reuse of an
earlier statement must not change.
"""
from __future__ import annotations

import sympy as sp

from ..program.ir import Program
from .arrays import (
    Arange,
    ArrayOp,
    ArrayRef,
    BroadcastTo,
    AtLeast,
    Conv,
    Windows,
    Equal,
    Eye,
    Full,
    Grouped,
    LeadingSums,
    MatMul,
    MaxAxis,
    NewAxes,
    OneHot,
    SumAxes,
    SumOfProduct,
    Transpose,
    Zeros,
    holds_array,
)

Extent = tuple  # sizes right-aligned for broadcasting; 1 for an axis an operand lacks


def _broadcast(extents: list[Extent | None]) -> Extent | None:
    if any(e is None for e in extents):
        return None
    width = max((len(e) for e in extents), default=0)
    result = []
    for axis in range(width):
        sizes = {e[len(e) - width + axis] for e in extents if len(e) - width + axis >= 0}
        sizes.discard(sp.S.One)
        if len(sizes) > 1:
            return None  # sizes that only the example values could show equal: do not guess
        result.append(sizes.pop() if sizes else sp.S.One)
    return tuple(result)


class Extents:
    """The extent of lowered code, from the shapes of the arrays the programs name; None where
    the code holds an operation whose result shape is not worked out here."""

    def __init__(self, programs: tuple[Program, ...]):
        self.programs = programs
        self.known: dict[str, Extent] = {}

    def named(self, name: str) -> Extent | None:
        if name not in self.known:
            for program in self.programs:
                if name in program.names:
                    lhs = program.lhs(name)
                    self.known[name] = tuple(program.shape(name)) if isinstance(
                        lhs, sp.Indexed) else ()
                    break
            else:
                return None
        return self.known[name]

    def __call__(self, code: sp.Expr) -> Extent | None:
        if isinstance(code, ArrayRef):
            return self.named(code.name)
        if not holds_array(code):
            return ()  # numbers, sizes and constants
        if isinstance(code, (Grouped,)):
            return self(code.args[0])
        if isinstance(code, (sp.Add, sp.Mul, sp.Pow)) or isinstance(
                code, (sp.Function, sp.Max, sp.Min)) and not isinstance(code, ArrayOp):
            return _broadcast([self(a) for a in code.args])
        if isinstance(code, NewAxes):
            inner, pattern = self(code.args[0]), code.args[1]
            if inner is None:
                return None
            kept = len([p for p in pattern if p == 0])
            head, tail = inner[:len(inner) - kept], list(inner[len(inner) - kept:])
            return tuple(head) + tuple(sp.S.One if p else tail.pop(0) for p in pattern)
        if isinstance(code, Transpose):
            inner = self(code.args[0])
            return None if inner is None else tuple(inner[int(p)] for p in code.args[1])
        if isinstance(code, SumAxes):
            inner, axes = self(code.args[0]), {int(a) for a in code.args[1]}
            return None if inner is None else tuple(
                s for k, s in enumerate(inner) if k not in axes)
        if isinstance(code, LeadingSums):
            return self(code.args[0])
        if isinstance(code, SumOfProduct):
            inner, axes = self(code.args[0]), {int(a) for a in code.args[2]}
            return None if inner is None else tuple(
                s for k, s in enumerate(inner) if k not in axes)
        if isinstance(code, MaxAxis):
            inner = self(code.args[0])
            return None if inner is None else tuple(
                s for k, s in enumerate(inner) if k != int(code.args[1]))
        if isinstance(code, MatMul):
            a, b = (self(x) for x in code.args)
            if a is None or b is None or not a or not b:
                return None
            if len(b) == 1:
                return a[:-1]
            if len(a) == 1:
                return b[:-2] + b[-1:]
            batch = _broadcast([a[:-2], b[:-2]])
            return None if batch is None else batch + (a[-2], b[-1])
        if isinstance(code, (BroadcastTo, Zeros)):
            return tuple(code.args[1] if isinstance(code, BroadcastTo) else code.args[0])
        if isinstance(code, Full):
            return tuple(code.args[0])
        if isinstance(code, Windows):
            x = self(code.args[0])
            return None if x is None else code.extent(x)
        if isinstance(code, Conv):
            x, w = self(code.args[0]), self(code.args[1])
            return None if x is None or w is None else code.extent(x, w)
        if isinstance(code, Arange):
            return (code.args[0],)
        if isinstance(code, Eye):
            return (code.args[0], code.args[-1])
        if isinstance(code, Equal):
            return _broadcast([self(a) for a in code.args])
        if isinstance(code, AtLeast):
            return _broadcast([self(a) for a in code.args[:2] if holds_array(a)])
        if isinstance(code, OneHot):
            labels = self(code.args[0])
            return None if labels is None else labels + (code.args[1],)
        return None


def _rank(extent: Extent | None) -> int | None:
    """How many axes of an extent have a size other than 1 (None: unknown, so large)."""
    return None if extent is None else len([s for s in extent if s != 1])
