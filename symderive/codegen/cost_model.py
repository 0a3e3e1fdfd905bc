"""What lowered code costs: the floating-point work and the memory traffic of every array statement
as it is lowered, as polynomials in the size symbols, read off the array operations themselves (an
elementwise operation does one operation per element of its result and reads its operands and
writes its result once; a matmul does ``2*m*k*n``; a sum reads what it sums; a view (transpose, new
axes, slice, broadcast) costs nothing; a gather or one-hot row writes what it makes), never from
numbers per layer. ``Cost`` adds, and is evaluated at the example sizes and at a large-size
profile (the example sizes scaled together until the largest array of the forward has about 2**20
elements), where the cost of a backward decides what it materialises; ``weighted`` combines
operations and memory as one CPU thread spends them (a word moved costs about as much as four
operations: a memory-bound elementwise pass runs at a quarter of the arithmetic rate).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from ..algebra.cost import large_sizes
from ..program.ir import Program
from .arrays import (
    AddAt,
    AddCMul,
    AddMatMul,
    Arange,
    ArgMaxAxis,
    ArrayOp,
    ArrayRef,
    ArrayStatement,
    BroadcastTo,
    Colon,
    Conv,
    Einsum,
    AtLeast,
    AxisScatterAdd,
    Equal,
    Eye,
    FlatScatterAdd,
    Full,
    Grouped,
    InPlace,
    LeadingSums,
    MatMul,
    MaxAxis,
    MaxValues,
    NewAxes,
    OneHot,
    Pad,
    Reshape,
    ScatterAdd,
    Sliced,
    SumAxes,
    SumOfProduct,
    Take,
    Transpose,
    Windows,
    Zeros,
    holds_array,
)
from .extents import Extent, Extents, _broadcast
from .lower import lower

# what reads an array without making one: views, and marks for the printers
VIEWS = (Transpose, NewAxes, Sliced, BroadcastTo, Reshape, Grouped, Colon, Windows)
WORD = 4  # what moving one element weighs against one operation in ``weighted``


@dataclass(frozen=True)
class Cost:
    """Operations and elements moved (read or written), polynomials in the size symbols."""

    flops: sp.Expr = sp.S.Zero
    words: sp.Expr = sp.S.Zero

    def __add__(self, other: Cost) -> Cost:
        return Cost(sp.expand(self.flops + other.flops), sp.expand(self.words + other.words))

    def at(self, sizes: dict) -> tuple[int, int]:
        """(operations, elements moved) at concrete ``sizes``."""
        return int(sp.sympify(self.flops).xreplace(sizes)), \
            int(sp.sympify(self.words).xreplace(sizes))

    def weighted(self, sizes: dict) -> int:
        """One number to compare backward programs by: operations plus ``WORD`` per element."""
        flops, words = self.at(sizes)
        return flops + WORD * words

    def summary(self, sizes: dict, large: dict) -> dict:
        """The fields ``derive --json`` prints for a cost."""
        flops, words = self.at(sizes)
        big_flops, big_words = self.at(large)
        return {"flops": str(self.flops), "bytes": str(sp.expand(4 * self.words)),
                "example": {"flops": flops, "bytes": 4 * words},
                "large": {"flops": big_flops, "bytes": 4 * big_words}}


def _count(extent: Extent | None) -> sp.Expr:
    """The number of elements of an extent (an unknown extent counts as none: the operations
    whose results cost nothing to read are views, and every other one has a known extent)."""
    return sp.Mul(*extent) if extent else sp.S.One if extent == () else sp.S.Zero


class Costs(Extents):
    """Extents of every array operation lowering makes (also those fusion does not need), and
    the cost of code built of them."""

    def __call__(self, code: sp.Expr) -> Extent | None:
        found = super().__call__(code)
        if found is not None or not isinstance(code, ArrayOp):
            return found
        if isinstance(code, Reshape):
            return tuple(code.args[1])
        if isinstance(code, (ScatterAdd, FlatScatterAdd, AxisScatterAdd)):
            return tuple(code.args[0])
        if isinstance(code, AddAt):
            return self(code.args[0])
        if isinstance(code, ArgMaxAxis):
            inner = self(code.args[0])
            return None if inner is None else tuple(
                s for k, s in enumerate(inner) if k != int(code.args[1]))
        if isinstance(code, MaxValues):
            inner = self(code.args[0])
            return None if inner is None else tuple(
                s for k, s in enumerate(inner) if k != int(code.args[1]))
        if isinstance(code, Sliced):
            inner = self(code.args[0])
            if inner is None:
                return None
            return tuple(size if start == 0 and stop == 0 else sp.expand(stop - start)
                         for size, (start, stop) in zip(inner, code.args[1]))
        if isinstance(code, Pad):
            inner = self(code.args[0])
            if inner is None:
                return None
            axis = int(code.args[1])
            grown = sp.expand(inner[axis] + code.args[2] + code.args[3])
            return inner[:axis] + (grown,) + inner[axis + 1:]
        if isinstance(code, Take):
            x, *indices = code.args
            inner = self(x)
            advanced = [self(i) for i in indices if not isinstance(i, Colon)]
            if inner is None or any(a is None for a in advanced):
                return None
            lead = len([i for i in indices if isinstance(i, Colon)])
            picked = _broadcast(advanced) if advanced else ()
            return None if picked is None else \
                inner[:lead] + picked + inner[lead + len(indices) - lead:]
        if isinstance(code, Einsum):
            spec, *arrays = code.args
            inputs, output = str(spec).split("->")
            sizes = {}
            for letters, array in zip(inputs.split(","), arrays):
                extent = self(array)
                if extent is None:
                    return None
                sizes.update(zip(letters, extent))
            return tuple(sizes[letter] for letter in output)
        return None

    # -- cost ------------------------------------------------------------------------------------
    def cost(self, code: sp.Expr) -> Cost:
        """The cost of evaluating ``code`` once, operation by operation as the printers spell it."""
        if not isinstance(code, sp.Basic) or not holds_array(code) or isinstance(code, ArrayRef):
            return Cost()
        inner = sum((self.cost(arg) for arg in code.args if isinstance(arg, sp.Basic)), Cost())
        out = _count(self(code))
        operands = sp.Add(*[_count(self(arg)) for arg in code.args
                            if isinstance(arg, sp.Basic) and holds_array(arg)])
        if isinstance(code, VIEWS):
            return inner  # a view, or a mark for the printers
        if isinstance(code, MatMul):
            a, b = (self(x) for x in code.args)
            shared = a[-1] if a else sp.S.One
            return inner + Cost(2 * out * shared, operands + out)
        if isinstance(code, AddMatMul):
            c, a, b = code.args
            shared = (self(a) or (sp.S.One,))[-1]
            return inner + Cost(2 * out * shared + out, operands + out)
        if isinstance(code, Conv):
            # a multiply and an add for every (output element, kernel tap, input channel), in
            # each kind's own terms: the correlation's output, the spread input, the kernel's
            a, b, kind = self(code.args[0]), self(code.args[1]), code.args[4]
            result = self(code)
            per = {0: _count(result) * _count(b[1:]), 1: _count(a) * _count(b[1:]),
                   2: _count(result) * _count(a) / a[1]}[int(kind)]
            return inner + Cost(2 * sp.expand(per), operands + out)
        if isinstance(code, Einsum):
            spec, *arrays = code.args
            sizes = {}
            for letters, array in zip(str(spec).split("->")[0].split(","), arrays):
                sizes.update(zip(letters, self(array) or ()))
            return inner + Cost(2 * sp.Mul(*sizes.values()), operands + out)
        if isinstance(code, (SumAxes, MaxAxis, ArgMaxAxis, MaxValues, LeadingSums)):
            summed = _count(self(code.args[0]))
            return inner + Cost(summed, summed + out)
        if isinstance(code, SumOfProduct):
            summed = _count(self(code.args[0]))
            return inner + Cost(2 * summed, 2 * summed + out)
        if isinstance(code, (Take, Pad, Zeros, Full, Arange, Eye)):
            return inner + Cost(sp.S.Zero, 2 * out if isinstance(code, Take) else out)
        if isinstance(code, (OneHot, Equal, AtLeast)):
            return inner + Cost(out, out)
        if isinstance(code, (ScatterAdd, FlatScatterAdd, AxisScatterAdd)):
            values = _count(self(code.args[2]))
            return inner + Cost(values, 2 * values + out)
        if isinstance(code, AddAt):
            return inner + Cost(sp.S.Zero, 2 * out)
        if isinstance(code, (AddCMul, InPlace)):
            return inner + Cost(2 * out, operands + out)
        # elementwise: a binary operation makes one pass per operand after the first
        passes = max(len([a for a in code.args if isinstance(a, sp.Basic)]) - 1, 1) \
            if isinstance(code, (sp.Add, sp.Mul)) else 1
        return inner + Cost(passes * out, operands + passes * out)

    def widest(self, code: sp.Expr) -> int:
        """The rank of the highest-rank array that evaluating ``code`` makes (views, which make
        none, and axes of a fixed length do not count): ``x[:, :, None]*y[None, :, :]`` makes one of
        rank 3 even where ``code`` sums it back to a matrix."""
        if not isinstance(code, sp.Basic) or not holds_array(code) or isinstance(code, ArrayRef):
            return 0
        inner = max((self.widest(arg) for arg in code.args if isinstance(arg, sp.Basic)),
                    default=0)
        if isinstance(code, VIEWS):
            return inner
        extent = self(code)
        if extent is None:  # not worked out (a Piecewise): at least what its operands make
            extent = max((self(arg) or () for arg in _operands(code)), key=_growing_rank,
                         default=())
        return max(inner, _growing_rank(extent))

    def remember(self, statement: ArrayStatement) -> None:
        """A temporary's extent (a name no program declares), for the statements that read it."""
        if self.named(statement.name) is None:
            extent = self(statement.code)
            if extent is not None:
                self.known[statement.name] = extent

    def statements(self, statements: list[ArrayStatement]) -> dict[str, Cost]:
        """Each assigned name's cost (a name assigned twice: both statements)."""
        found: dict[str, Cost] = {}
        for statement in statements:
            found[statement.name] = found.get(statement.name, Cost()) + self.cost(statement.code)
            self.remember(statement)
        return found

    def widest_statement(self, statements: list[ArrayStatement]) -> tuple[int, str | None]:
        """The highest rank an array ``statements`` make has, and the first statement making
        one of that rank."""
        widest, where = 0, None
        for statement in statements:
            rank = self.widest(statement.code)
            if rank > widest:
                widest, where = rank, statement.name
            self.remember(statement)
        return widest, where


def backward_costs(program: Program, backward: Program) -> dict[str, Cost]:
    """Each statement's cost in ``backward`` as lowered (by the name it assigns), and the
    whole backward's under ``"total"``."""
    found = Costs((backward, program)).statements(lower(backward, program))
    found["total"] = sum(found.values(), Cost())
    return found


def _growing_rank(extent: Extent) -> int:
    """The axes that grow with the sizes: an axis of a fixed length (1 of a broadcast, the 2 of
    a window split off by a reshape) does not count."""
    return len([size for size in extent if not sp.sympify(size).is_number])


def _operands(code: sp.Basic):
    """The array operands of ``code``, through the (value, condition) pairs of a Piecewise."""
    for arg in code.args:
        if isinstance(arg, sp.Basic) and holds_array(arg):
            yield from _operands(arg) if isinstance(arg, ExprCondPair) else (arg,)


def widest_arrays(program: Program, backward: Program) -> dict:
    """The rank of the highest-rank array the forward holds (an input, a statement's result or a
    temporary of its lowered code) and of the highest-rank one the backward as lowered makes,
    with the backward statement that makes it: the backward should make none of higher rank
    than the forward (issue 21: an outer product summed back is work the chain rule's own
    contractions never need)."""
    forward, _ = Costs((program,)).widest_statement(lower(program))
    held = [_growing_rank(program.shape(x.name)) for x in (*program.inputs, *program.body)]
    backward_rank, where = Costs((backward, program)).widest_statement(lower(backward, program))
    return {"forward": max([forward, *held]), "backward": backward_rank, "statement": where}


__all__ = ["Cost", "Costs", "backward_costs", "large_sizes", "widest_arrays"]
