"""The array operations lowered code is made of: SymPy functions that are never evaluated, only
printed (a transpose, new axes, axis sums, matmul, einsum, gathers, one-hot rows, reshapes,
scatter-adds, pads; the fused forms ``fuse`` writes), with ``ArrayRef`` for a named value and
``Value`` for code together with the index each of its axes stands for; and the helpers that
align values for elementwise arithmetic. Each printer adds one ``_print_<Class>`` per
operation.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..program.ir import ProgramError, affine_parts, idx_size


class ArrayOp(sp.Function):
    """Base of the array operations; never evaluated, only printed. Every array is real: saying
    so keeps SymPy's assumption queries (``sinh(a).is_real`` asks for ``im(a)``) from probing it."""

    is_extended_real = True

    @classmethod
    def eval(cls, *args):
        return None


class Transpose(ArrayOp):
    """``Transpose(x, (1, 0))`` -> ``x.T`` / ``x.transpose(1, 0)``."""


class NewAxes(ArrayOp):
    """``NewAxes(x, (0, 1))`` -> ``x[:, None]``: 1 marks an inserted axis, 0 an existing one."""


class SumAxes(ArrayOp):
    """``SumAxes(x, (0,), 2)`` -> ``x.sum(0)`` for a 2-axis ``x``; ``SumAxes(x, (0, 1), 2)`` ->
    ``x.sum()``. The axes are always listed: an empty tuple sums over nothing, never everything."""


class MaxAxis(ArrayOp):
    """``MaxAxis(x, 1)`` -> ``x.max(1)`` (values only)."""


class ArgMaxAxis(ArrayOp):
    """``ArgMaxAxis(x, 1)`` -> ``x.argmax(1)``."""


class MaxWithIndices(ArrayOp):
    """``MaxWithIndices(x, 1)`` -> ``x.max(1)``: the maxima and the indices where they are
    (the first at ties, as ``argmax``), found in one pass, as a pair that ``Item`` reads."""


class Item(ArrayOp):
    """``Item(pair, 1)`` -> ``pair[1]``: one part of a value that holds several."""


class MatMul(ArrayOp):
    """``MatMul(a, b)`` -> ``a @ b``."""

    precedence = PRECEDENCE["Mul"]  # Python's @ binds like *, so a product around it needs parens


class Einsum(ArrayOp):
    """``Einsum(Symbol("ij,jk->ik"), a, b)`` -> ``np.einsum("ij,jk->ik", a, b)``."""


class Take(ArrayOp):
    """``Take(x, i0, i1, ...)`` -> ``x[i0, i1, ...]`` (advanced indexing, trailing axes whole)."""


class Arange(ArrayOp):
    """``Arange(n)`` -> ``np.arange(n)``."""


class OneHot(ArrayOp):
    """``OneHot(labels, V)`` -> float rows with a 1 at each label, shape ``labels.shape + (V,)``."""


class Equal(ArrayOp):
    """``Equal(a, b)`` -> 1 where the integer arrays ``a`` and ``b`` are equal, else 0, in the
    working dtype: a delta between two index expressions that share an index
    (``KroneckerDelta(Z[i] + 1, i)``)."""


class AtLeast(ArrayOp):
    """``AtLeast(a, b, strict)`` -> 1 where the integer arrays satisfy ``a >= b`` (``a > b`` when
    ``strict`` is 1), else 0, in the working dtype: a mask computed from the indices
    (``Heaviside(t - s, 1)``, causal attention's)."""


class Eye(ArrayOp):
    """``Eye(n)`` -> the identity matrix: a delta between two free indices; ``Eye(n, m)`` the
    rectangular one, for indices over ranges of two lengths."""


class Reshape(ArrayOp):
    """``Reshape(x, (n, B*E))`` -> ``x.reshape(n, B*E)``."""


class BroadcastTo(ArrayOp):
    """``BroadcastTo(x, (n, H))`` -> a read-only broadcast view of ``x`` with that shape."""


class Zeros(ArrayOp):
    """``Zeros((n, H))`` -> an array of zeros in the working dtype: a gradient that is
    identically zero (``b1`` under batchnorm)."""


class AddAt(ArrayOp):
    """``AddAt(base, (rows, labels), value)`` -> a fresh copy of ``base`` with ``value`` added at
    one label per row (``d[np.arange(n), Y] += value``); the rows are distinct, so no index repeats."""


class Full(ArrayOp):
    """``Full((n, H), 1/n)`` -> an array of one value in the working dtype."""


class ScatterAdd(ArrayOp):
    """``ScatterAdd((V, E), index, values)`` -> zeros of that shape with ``values`` added at the
    rows ``index`` names (``np.add.at`` / ``index_add_``); the adjoint of a gather."""


class FlatScatterAdd(ArrayOp):
    """``FlatScatterAdd((n, L), index, values)`` -> zeros of that shape with each of ``values``
    added at the position ``index`` gives it in the array flattened row-major (``np.add.at`` /
    ``index_add_`` on the flat view): the adjoint of a read whose positions vary along the other
    axes, such as a window at a label's offset."""


class Windows(ArrayOp):
    """``Windows(x, axis, size, step)`` -> a view of ``x`` whose ``axis`` holds the start of each
    window, ``step`` apart, and whose new last axis the ``size`` positions inside it
    (``x.unfold(axis, size, step)``; NumPy's ``sliding_window_view``): a strided window read,
    ``x[i, c, 2*p + u]``, without a copy. The axis holds exactly the windows' reach."""

    def extent(self, x: tuple) -> tuple:
        axis, size, step = int(self.args[1]), self.args[2], self.args[3]
        starts = sp.expand((x[axis] - size) / step + 1)
        return x[:axis] + (starts,) + x[axis + 1:] + (size,)


class Conv(ArrayOp):
    """``Conv(a, b, stride, dilation, kind)`` -> a convolution without padding, bias or groups, in
    torch's layout, each output position ``stride`` apart and the kernel's taps ``dilation``
    apart. ``kind`` 0: ``a`` (N, C, *L) correlated with the kernel ``b`` (O, C, *K); 1 (the
    adjoint in the input): ``a`` (N, C, *Q) spread through ``b`` (C, O, *K); 2 (the adjoint in
    the kernel): ``a`` (N, O, *Q) the output's adjoint against the input ``b`` (N, C, *L), giving
    (O, C, *K). Lowering reads the positions the windows reach, or a tail of fewer than a step
    past them (the step between outputs for 0, between taps for 2), which adds no window: every
    length divides evenly once floored. torch calls its own kernels, NumPy the emitted helpers ``conv``, ``conv_transpose``
    and ``conv_weight``."""

    KINDS = ("conv", "conv_transpose", "conv_weight")

    def extent(self, a: tuple, b: tuple) -> tuple:
        """The result's extent from the operands'."""
        stride, dilation, kind = self.args[2:]
        if kind == 1:
            spatial = [(q - 1) * s + (k - 1) * d + 1
                       for q, k, s, d in zip(a[2:], b[2:], stride, dilation)]
            return (a[0], b[1], *[sp.expand(z) for z in spatial])
        # floor: an input longer than the windows reach by less than a step adds no window
        if kind == 2:
            spatial = [sp.floor(sp.expand((length - (q - 1) * s - 1) / d)) + 1
                       for q, length, s, d in zip(a[2:], b[2:], stride, dilation)]
            return (a[1], b[1], *[sp.expand(z) for z in spatial])
        spatial = [sp.floor(sp.expand((length - (k - 1) * d - 1) / s)) + 1
                   for length, k, s, d in zip(a[2:], b[2:], stride, dilation)]
        return (a[0], b[0], *[sp.expand(z) for z in spatial])


class AxisScatterAdd(ArrayOp):
    """``AxisScatterAdd((n, C, L), index, values, 2)`` -> zeros of that shape with each of
    ``values`` added along ``axis`` at the position ``index`` gives it, every other axis where the
    value is (``scatter_add_``; NumPy's helper ``add_along``): ``index`` and ``values`` have the
    array's shape but along ``axis``. The adjoint of a read at computed positions along one axis
    (max pooling's argmax), without flat positions over the whole array."""


class Sliced(ArrayOp):
    """``Sliced(x, ((0, 0), (H, 2*H)))`` -> ``x[:, H:2*H]``: one (start, stop) per axis, a
    whole axis as ``(0, 0)``; a shifted or leading-part read (``x[i, j + H]``, ``x[i, j]`` of
    2*H)."""


class Colon(ArrayOp):
    """``Colon()`` -> ``:``, a whole axis ahead of advanced indices in a ``Take``."""


class Pad(ArrayOp):
    """``Pad(x, axis, before, after, ndim)`` -> ``x`` with ``before`` zeros ahead of and ``after``
    behind it along ``axis``: the adjoint of a slice (``Sum(KroneckerDelta(l, j + H)*g[j], j)``)."""


class Grouped(ArrayOp):
    """``Grouped(g/(n - 1))`` -> ``(g/(n - 1))``: small factors multiplied before the product
    meets a larger array (Python evaluates ``x*g/(n - 1)`` left to right)."""

    precedence = PRECEDENCE["Atom"]


class AddCMul(ArrayOp):
    """``AddCMul(a, x, s)`` -> ``a + x*s`` in one pass (``torch.addcmul``), a fresh array."""


class AddMatMul(ArrayOp):
    """``AddMatMul(c, a, b)`` -> ``c + a @ b`` in one call (``torch.addmm``, as ``nn.Linear``)."""


class SumOfProduct(ArrayOp):
    """``SumOfProduct(a, b, axes, ndim)`` -> ``(a*b).sum(axes)`` for two arrays of one extent,
    summed over leading axes only; NumPy spells it ``np.einsum("ij,ij->j", a, b)``, which makes
    no full-size temporary and adds the rows in the same order as ``.sum(0)`` does."""


class MaxValues(ArrayOp):
    """``MaxValues(x, 1)`` -> ``x.amax(1)``: the maxima alone, several times faster in torch than
    ``x.max(1).values``, which finds the indices too. Its autograd splits the gradient between
    tied maxima, so it is used only where the derived backward never asks which element is the
    maximum (no ``ArgMax``: the maximum's adjoint cancelled, as the cross-entropy shift's does)."""


class LeadingSums(ArrayOp):
    """``LeadingSums(s)`` for a sum ``s`` (``SumAxes`` or ``SumOfProduct``) over the leading
    axes of an array that keeps others, ``x.sum(0)`` of a matrix: torch calls the emitted helper
    ``leading_sums`` (``LEADING_SUMS``) on it, which adds a large contiguous array in one
    streaming pass where ``.sum(0)`` walks its columns at the row stride (0.34 ms against 0.78 ms
    at 1 thread for 4096x1024 float32), as accurately; NumPy prints ``s`` itself. Each target's
    spelling is a SymPy print method of this class, so the printers need no case for it."""

    def summed(self):
        """(the array summed, how many leading axes)."""
        inner = self.args[0]
        array = inner.args[0] if isinstance(inner, SumAxes) else inner.args[0] * inner.args[1]
        return array, len(inner.args[-2])

    def _torchcode(self, printer, **settings):
        array, axes = self.summed()
        more = '' if axes == 1 else f', {axes}'
        inner = self.args[0]
        if isinstance(inner, SumOfProduct):  # the product is never made whole
            return f"leading_dot({printer._print(inner.args[0])}, {printer._print(inner.args[1])}{more})"
        return f"leading_sums({printer._print(array)}{more})"

    def _numpycode(self, printer, **settings):
        return printer._print(self.args[0])


class InPlace(ArrayOp):
    """``InPlace(start, ((kind, operand...), ...))``: a fresh array ``start`` updated in place by
    each step in turn: ``("add", t)`` adds ``t``, ``("mul", s)`` multiplies by ``s`` and
    ``("addcmul", x, s)`` adds ``x*s``."""



class ArrayRef(sp.Symbol):
    """A forward value or adjoint in lowered code, as opposed to a size or a named constant:
    printers spell a function of sizes and constants alone with ``math`` (a Python float keeps
    the arrays' dtype; ``np.log(n)`` would be a float64 scalar)."""


@dataclass(frozen=True)
class Value:
    code: sp.Expr
    axes: tuple[sp.Idx, ...]


@dataclass(frozen=True)
class ArrayStatement:
    name: str
    code: sp.Expr
    accumulate: bool = False


class LoweringError(ProgramError):
    """An index expression with no vectorised lowering yet; the message names it."""


# What makes lowered code an array rather than a number: a named value, or an operation that makes
# an array of its own without reading one (an arange, the identity, zeros, one value repeated; a
# one-hot row or scatter reads one of these or a name).
_ARRAY_ATOMS = (ArrayRef, Arange, Eye, Zeros, Full)


def holds_array(code: sp.Expr) -> bool:
    """Whether lowered ``code`` is an array (has a shape and a dtype), not a plain number: a
    one-hot matrix of aranges is an array though it reads no named value."""
    return code.has(*_ARRAY_ATOMS)


def broadcast_to(code: sp.Expr, shape: sp.Tuple) -> sp.Expr:
    """``code`` broadcast to ``shape``: a view of an array, or, for code of sizes, constants and
    numbers alone (which has no array to view and no dtype), a new array of that one value."""
    if holds_array(code):
        return BroadcastTo(code, shape)
    return Full(shape, code)


def _align(value: Value, order: list[sp.Idx]) -> sp.Expr:
    """``value``'s code transposed to ``order`` and padded with new axes so that NumPy's
    right-aligned broadcasting lines it up with an array whose axes are all of ``order``."""
    number, rest = value.code.as_coeff_Mul()
    if number != 1:  # keep the sign outside: -x[:, None], not (-x)[:, None]
        return number * _align(Value(rest, value.axes), order)
    mine = [k for k in order if k in value.axes]
    code = value.code
    if list(value.axes) != mine:
        code = Transpose(code, sp.Tuple(*[value.axes.index(k) for k in mine]))
    if not mine:
        return code
    start = order.index(mine[0])
    pattern = [0 if k in value.axes else 1 for k in order[start:]]
    return NewAxes(code, sp.Tuple(*pattern)) if any(pattern) else code


def _union(values: list[Value], order: list[sp.Idx]) -> list[sp.Idx]:
    """The axes of an elementwise combination: the widest operand's layout when it has them all
    (so ``x - mu`` stays ``(i, j)`` and needs no transpose), else ``order``'s."""
    present = {k for v in values for k in v.axes}
    widest = max(values, key=lambda v: len(v.axes), default=None)
    if widest is not None and set(widest.axes) == present:
        return list(widest.axes)
    return [k for k in order if k in present]


def _merged_matmuls(values: list[Value]) -> list[Value]:
    """Terms of a sum that are matmuls sharing an operand, one matmul: ``x @ W + y @ W ->
    (x + y) @ W`` (the other operands are made over the same axes, as the matmuls' results
    are), so one contraction is made where there were several; a number factor goes with its
    operand."""
    groups: dict = {}
    for value in values:
        number, rest = value.code.as_coeff_Mul()
        if isinstance(rest, MatMul):
            for side in (0, 1):  # the shared operand: the right one first
                key = (1 - side, rest.args[1 - side], value.axes)
                groups.setdefault(key, []).append((number, rest, value))
    merged, used = [], set()
    for (shared, operand, axes), group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        group = [g for g in group if id(g[2]) not in used]
        if len(group) < 2:
            continue
        other = sp.Add(*[number * rest.args[1 - shared] for number, rest, _ in group])
        code = MatMul(other, operand) if shared == 1 else MatMul(operand, other)
        merged.append(Value(code, axes))
        used |= {id(g[2]) for g in group}
    return [v for v in values if id(v) not in used] + merged


def _merged_pads(values: list[Value]) -> list[Value]:
    """Terms of a sum padded the same way pad once: ``pad(a) - pad(b) -> pad(a - b)``."""
    groups: dict = {}
    for value in values:
        number, rest = value.code.as_coeff_Mul()
        key = (rest.args[1:], value.axes) if isinstance(rest, Pad) else None
        groups.setdefault(key, []).append((number, rest, value))
    if all(len(group) == 1 for key, group in groups.items() if key is not None):
        return values
    merged = list(groups.pop(None, []))
    result = [value for _, _, value in merged]
    for (params, axes), group in groups.items():
        inner = sp.Add(*[number * rest.args[0] for number, rest, _ in group])
        result.append(Value(Pad(inner, *params), axes))
    return result


def _slice_of(index: sp.Expr, size: sp.Expr) -> tuple | None:
    """The (start, stop) a read's index takes of an axis of ``size`` when it is a contiguous part
    of it, ``(0, 0)`` for the whole axis; None when it needs advanced indexing."""
    if isinstance(index, sp.Idx):
        return (0, 0) if sp.expand(idx_size(index) - size) == 0 else (0, idx_size(index))
    found = affine_parts(index)
    if found is None or len(found[0]) != 1:
        return None
    (k,), offset = found
    return (offset, sp.expand(offset + idx_size(k)))


def _presummed(values: list[Value], summed: set, order: list[sp.Idx]) -> list[Value]:
    """Operands to contract, simplified until nothing changes: a summed index only one operand has
    is summed out of it, and an operand over a subset of another's axes multiplies into it."""
    while True:
        values = _merge_subsets(values, order)
        changed = False
        for m, value in enumerate(values):
            alone = [k for k in value.axes if k in summed
                     and not any(k in w.axes for q, w in enumerate(values) if q != m)]
            if alone and len(values) > 1:
                positions = tuple(value.axes.index(k) for k in alone)
                values[m] = Value(SumAxes(value.code, sp.Tuple(*positions), len(value.axes)),
                                  tuple(k for k in value.axes if k not in alone))
                changed = True
        if not changed:
            return values


def _merge_subsets(values: list[Value], order: list[sp.Idx]) -> list[Value]:
    """Multiply elementwise every operand whose axes another operand has all of into that one."""
    values = sorted(values, key=lambda v: -len(v.axes))
    merged: list[Value] = []
    for value in values:
        home = next((m for m, w in enumerate(merged) if set(value.axes) <= set(w.axes)), None)
        if home is None:
            merged.append(value)
        else:
            wide = merged[home]
            axes = list(wide.axes)
            merged[home] = Value(wide.code * _align(value, axes) if value.axes else
                                 wide.code * value.code, wide.axes)
    return merged


def _oriented(value: Value, axes: list[sp.Idx]) -> sp.Expr:
    if list(value.axes) == axes:
        return value.code
    return Transpose(value.code, sp.Tuple(*[value.axes.index(k) for k in axes]))
