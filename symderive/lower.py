"""Lowering: index expressions to array expressions, shared by the NumPy and torch printers.

Each subexpression lowers to a ``Value``: a SymPy expression over array-valued symbols and the
small array operations below (transpose, new axes, axis sums, matmul, einsum, gathers, one-hot,
reshape, scatter-add), together with the index each of its axes stands for. Elementwise arithmetic
stays SymPy arithmetic on aligned operands, so the printers only add a ``_print_`` method per class.
Nothing loops over data: reductions become ``sum``, two-array contractions ``@``, label deltas
one-hot rows, and the adjoint of a gather a scatter-add.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from .ir import (
    Assign,
    Program,
    ProgramError,
    affine_parts,
    flatten_parts,
    free_indices,
    idx_size,
    index_size,
    name_of,
)
from .ops import ArgMax, ExprCondPair, Maximum, Piecewise
from .terms import is_scalar
from .validate import emitted_names


def _terms(expr: sp.Expr) -> list[sp.Expr]:
    """The terms of ``expr`` with products distributed over sums, and nothing inside a function
    touched: SymPy's ``expand`` would also split ``exp(a - b)`` into ``exp(a)*exp(-b)``, which
    overflows where the shifted exponential cannot (a log-sum-exp's gradient at logits of 1000)."""
    if isinstance(expr, sp.Add):
        return [t for arg in expr.args for t in _terms(arg)]
    if isinstance(expr, sp.Mul):
        products = [sp.S.One]
        for factor in expr.args:
            products = [p * t for p in products for t in _terms(factor)]
        return products
    return [expr]


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


class Sliced(ArrayOp):
    """``Sliced(x, ((0, 0), (H, 2*H)))`` -> ``x[:, H:2*H]``: one (start, stop) per axis, a
    whole axis as ``(0, 0)``; a shifted or leading-part read (``x[i, j + H]``, ``x[i, j]`` of
    2*H)."""


class Colon(ArrayOp):
    """``Colon()`` -> ``:``, a whole axis ahead of advanced indices in a ``Take``."""


class Pad(ArrayOp):
    """``Pad(x, axis, before, after, ndim)`` -> ``x`` with ``before`` zeros ahead of and ``after``
    behind it along ``axis``: the adjoint of a slice (``Sum(KroneckerDelta(l, j + H)*g[j], j)``)."""


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


class Lowerer:
    """Lowers the statements of one program (forward or backward) to array statements."""

    def __init__(self, program: Program):
        self.program = program
        # looked up once per program, not once per subexpression: the lookups print SymPy names
        # and scan every statement, which made lowering grow with the square of the program
        self.names = frozenset(program.names)
        self.shapes: dict[str, tuple] = {}

    def shape(self, name: str) -> tuple:
        if name not in self.shapes:
            self.shapes[name] = self.program.shape(name)
        return self.shapes[name]

    def lhs_shape(self, s: Assign) -> tuple:
        return tuple(index_size(k, self.program) for k in s.indices)

    # -- statements ------------------------------------------------------------------------------
    def statement(self, s: Assign) -> ArrayStatement:
        lhs_axes: list[sp.Idx] = []
        for index in (s.lhs.indices if isinstance(s.lhs, sp.Indexed) else ()):
            lhs_axes.extend([index] if isinstance(index, sp.Idx) else flatten_parts(index))
        if s.rhs == 0:  # a gradient that cancelled symbolically
            return ArrayStatement(s.name, Zeros(sp.Tuple(*self.lhs_shape(s))), s.accumulate)
        scatter = self.scatter(s, lhs_axes)
        if scatter is None and len(lhs_axes) == len(s.indices):
            scatter = self.window_scatter(s, lhs_axes) or self.flat_scatter(s, lhs_axes)
        if scatter is not None:
            return ArrayStatement(s.name, scatter, s.accumulate)
        if not s.accumulate and (picked := self.label_update(s, lhs_axes)) is not None:
            return ArrayStatement(s.name, picked)
        code = self.full(s.rhs, lhs_axes, broadcast=not s.accumulate)
        if len(lhs_axes) != len(s.indices):  # a flattened lhs: merge the axes row-major
            code = Reshape(code, sp.Tuple(*self.lhs_shape(s)))
        return ArrayStatement(s.name, code, s.accumulate)

    def full(self, rhs: sp.Expr, lhs_axes: list[sp.Idx], broadcast: bool) -> sp.Expr:
        """``rhs`` laid out over exactly ``lhs_axes`` (broadcast to them when ``broadcast``)."""
        if rhs == 0:
            return Zeros(sp.Tuple(*[idx_size(k) for k in lhs_axes]))
        value = self.expr(rhs, list(lhs_axes))
        stray = [k for k in value.axes if k not in lhs_axes]
        if stray:
            raise LoweringError(f"'{rhs}': index {stray[0]} is left over after lowering")
        code = _align(value, lhs_axes) if value.axes else value.code
        if broadcast and any(k not in value.axes for k in lhs_axes):
            code = broadcast_to(code, sp.Tuple(*[idx_size(k) for k in lhs_axes]))
        return code

    def label_update(self, s: Assign, lhs_axes: list[sp.Idx]) -> sp.Expr | None:
        """``(probs[i, c] - KroneckerDelta(c, Y[i]))/n`` as ``probs/n`` with ``-1/n`` added at
        ``[arange(n), Y]``: one pass over the array instead of building a one-hot matrix."""
        if len(lhs_axes) < 2 or len(lhs_axes) != len(s.indices):
            return None
        row, others = lhs_axes[-1], lhs_axes[:-1]
        def is_pick(delta):
            label = [a for a in delta.args if a != row]
            return row in delta.args and len(label) == 1 and row not in free_indices(label[0]) \
                and free_indices(label[0]) == others
        if not any(is_pick(d) for d in s.rhs.atoms(sp.KroneckerDelta)):
            return None
        picks, rest = [], []
        for term in _terms(s.rhs):
            factors = sp.Mul.make_args(term)
            deltas = [f for f in factors if isinstance(f, sp.KroneckerDelta) and is_pick(f)]
            scale = sp.Mul(*[f for f in factors if f not in deltas])
            if len(deltas) == 1 and row not in free_indices(scale):
                picks.append((deltas[0], scale))
            else:
                rest.append(term)
        if len(picks) != 1:
            return None
        (delta, scale), = picks
        (label,) = [a for a in delta.args if a != row]
        base = self.full(sp.Add(*rest), lhs_axes, broadcast=True)
        index = [_align(Value(Arange(idx_size(k)), (k,)), others) for k in others]
        # the adjoint of a diagonal read (dx[i, k] = KroneckerDelta(i, k)*dy[i]) picks the row's
        # own index: its value is written onto the diagonal, at [arange(n), arange(n)]
        label_value = Value(Arange(idx_size(label)), (label,)) if isinstance(label, sp.Idx) \
            else self.expr(label, list(others))
        index.append(_align(label_value, others))
        value = self.expr(scale, list(others))
        return AddAt(base, sp.Tuple(*index), _align(value, others) if value.axes else value.code)

    def scatter(self, s: Assign, lhs_axes: list[sp.Idx]) -> sp.Expr | None:
        """``A[v, e] = Sum(KroneckerDelta(v, X[i, t]) * f[i, t, e], i, t)`` as a scatter-add."""
        coeff, rest = s.rhs.as_coeff_Mul()
        if not isinstance(rest, sp.Sum) or not lhs_axes:
            return None
        row = lhs_axes[0]
        deltas = [f for f in sp.Mul.make_args(rest.function) if isinstance(f, sp.KroneckerDelta)
                  and row in f.args]
        if len(deltas) != 1:
            return None
        (label,) = [a for a in deltas[0].args if a != row]
        bound = [limit[0] for limit in rest.limits]
        if not isinstance(label, sp.Indexed) or row in free_indices(label):
            return None
        label_axes = list(label.indices)
        if not all(k in bound for k in label_axes):
            return None
        summand = coeff * sp.Mul(*[f for f in sp.Mul.make_args(rest.function) if f != deltas[0]])
        extra = [k for k in bound if k not in label_axes]
        if extra:
            summand = sp.Sum(summand, *extra)
        order = label_axes + lhs_axes[1:]
        values = self.expr(summand, list(order))
        if any(k not in order for k in values.axes):
            return None  # the summand uses the scattered row itself: not a plain scatter
        code = _align(values, order) if values.axes else values.code
        if list(values.axes) != order:  # every (row, column) must carry its own value
            code = broadcast_to(code, sp.Tuple(*[idx_size(k) for k in order]))
        index = _align(self.expr(label, list(order)), label_axes)
        return ScatterAdd(sp.Tuple(*self.lhs_shape(s)), index, code)

    def window_scatter(self, s: Assign, lhs_axes: list[sp.Idx]) -> sp.Expr | None:
        """``dx[i, c, l] = Sum(KroneckerDelta(l, p + u)*g[i, c, p, u], p, u, ...)`` (the adjoint of a
        sliding-window read) as a scatter-add of ``g`` along ``l``'s axis at ``p + u``."""
        coeff, rest = s.rhs.as_coeff_Mul()
        if not isinstance(rest, sp.Sum):
            return None
        bound = [limit[0] for limit in rest.limits]
        factors = sp.Mul.make_args(rest.function)
        for delta in [f for f in factors if isinstance(f, sp.KroneckerDelta)]:
            for row, label in (delta.args, delta.args[::-1]):
                found = affine_parts(label)
                if row not in lhs_axes or found is None or len(found[0]) < 2 or \
                        not all(k in bound for k in found[0]):
                    continue
                summand = coeff * sp.Mul(*[f for f in factors if f is not delta])
                if row in free_indices(summand):
                    continue
                parts = found[0]
                extra = [k for k in bound if k not in parts]
                if extra:
                    summand = sp.Sum(summand, *extra)
                position = lhs_axes.index(row)
                order = lhs_axes[:position] + parts + lhs_axes[position + 1:]
                values = self.expr(summand, list(order))
                if any(k not in order for k in values.axes):
                    continue
                code = _align(values, order) if values.axes else values.code
                if list(values.axes) != order:
                    code = broadcast_to(code, sp.Tuple(*[idx_size(k) for k in order]))
                index = self.affine(label, list(parts))
                return ScatterAdd(sp.Tuple(*self.lhs_shape(s)), _align(index, parts), code,
                                  position)
        return None

    def flat_scatter(self, s: Assign, lhs_axes: list[sp.Idx]) -> sp.Expr | None:
        """``dS[i, l] = Sum(KroneckerDelta(l, q + Z[i])*K[q], q)`` (the adjoint of ``S[i, j + q]``
        read at ``j = Z[i]``): each value of the summand is added where the delta puts it, the
        positions varying along the other axes, so that no one axis's scatter fits; it is made
        at the flattened array's positions, ``i*L + q + Z[i]``. The delta's other side is an
        integer index expression of the summed and the other free indices."""
        coeff, rest = s.rhs.as_independent(sp.Sum, as_Add=False)  # (-1/n)*Sum(...)
        if not isinstance(rest, sp.Sum) or not is_scalar(coeff):
            return None
        bound = [limit[0] for limit in rest.limits]
        factors = sp.Mul.make_args(rest.function)
        for delta in [f for f in factors if isinstance(f, sp.KroneckerDelta)]:
            for row, position in (delta.args, delta.args[::-1]):
                if row not in lhs_axes or isinstance(position, sp.Idx) or \
                        row in free_indices(position):
                    continue
                summand = coeff * sp.Mul(*[f for f in factors if f is not delta])
                if row in free_indices(summand) or not self.within(position, idx_size(row)):
                    continue  # (a position outside the axis is a delta of 0: not a scatter)
                others = [k for k in lhs_axes if k != row]
                order = others + bound
                shape = sp.Tuple(*[idx_size(k) for k in order])
                sizes = self.lhs_shape(s)
                stride = {k: sp.Mul(*sizes[m + 1:]) for m, k in enumerate(lhs_axes)}
                flat = sp.Add(*[k * stride[k] for k in others]) + position * stride[row]
                try:
                    values = self.expr(summand, list(order))
                    places = self.index_values(flat, list(order))
                except LoweringError:
                    continue
                if any(k not in order for k in values.axes + places.axes):
                    continue
                return FlatScatterAdd(sp.Tuple(*sizes), broadcast_to(_align(places, order),
                                                                     shape),
                                      broadcast_to(_align(values, order) if values.axes
                                                   else values.code, shape))
        return None

    def within(self, position: sp.Expr, size: sp.Expr) -> bool:
        """Whether every value of the integer index expression ``position`` lies in
        ``range(size)``, for every size: each index contributes ``0 .. size - 1`` times its
        coefficient, each label read ``0 .. classes - 1`` (labels are checked in range), and what
        is left is a constant offset."""
        low = high = sp.S.Zero
        for term in sp.Add.make_args(sp.expand(position)):
            coeff, atom = term.as_coeff_Mul()
            if isinstance(atom, sp.Idx):
                top = idx_size(atom) - 1
            elif isinstance(atom, sp.Indexed) and self.program.integer(name_of(atom)):
                top = self.program.input(name_of(atom)).classes - 1
            elif not atom.free_symbols - set(dict(self.program.sizes)):
                low, high = low + term, high + term  # a number or a size: an offset
                continue
            else:
                return False
            if coeff.is_negative:
                low += coeff * top
            else:
                high += coeff * top
        return sp.expand(low).is_nonnegative is True and \
            sp.expand(size - 1 - high).is_nonnegative is True

    def index_values(self, e: sp.Expr, order: list[sp.Idx]) -> Value:
        """An integer index expression's values over its indices: an index is its arange, a label
        read its values, sums and multiples (by sizes) of these combined (``q + Z[i]`` ->
        ``arange(U) + Z[:, None]``)."""
        if isinstance(e, sp.Idx):
            if e not in order:
                order.append(e)
            return Value(Arange(idx_size(e)), (e,))
        if isinstance(e, (sp.Add, sp.Mul)):
            values = [self.index_values(arg, order) for arg in e.args]
            axes = _union(values, order)
            return Value(e.func(*[_align(v, axes) if v.axes else v.code for v in values]),
                         tuple(axes))
        return self.expr(e, order)

    # -- expressions -----------------------------------------------------------------------------
    def expr(self, e: sp.Expr, order: list[sp.Idx]) -> Value:
        """Lower ``e``; ``order`` is the statement's index order, extended as sums bind more."""
        for k in free_indices(e):
            if k not in order:
                order.append(k)
        if is_scalar(e):  # sizes, constants and scalar names: the latter are arrays too
            return Value(e.xreplace({x: ArrayRef(x.name) for x in e.atoms(sp.Symbol)
                                     if x.name in self.names}), ())
        if isinstance(e, sp.Indexed):
            return self.read(e, order)
        if isinstance(e, sp.Sum):
            return self.sum(e, order)
        if isinstance(e, (Maximum, ArgMax)):
            (index,) = [limit[0] for limit in e.limits]
            inner = list(order) + [index]
            value = self.expr(e.function, inner)
            axes = _union([value], inner)
            aligned = _align(value, axes)
            op = MaxAxis if isinstance(e, Maximum) else ArgMaxAxis
            return Value(op(aligned, axes.index(index)), tuple(k for k in axes if k != index))
        if isinstance(e, sp.KroneckerDelta):
            return self.delta(e, order)
        if isinstance(e, Piecewise):
            return self.piecewise(e, order)
        if isinstance(e, (sp.Add, sp.Mul, sp.Pow, sp.Function, sp.Max, sp.Min)):
            values = [self.expr(arg, order) for arg in e.args]
            if isinstance(e, sp.Add):
                values = _merged_pads(values)
            axes = _union(values, order)
            args = [_align(v, axes) if v.axes else v.code for v in values]
            # a function is rebuilt as written: evaluated, Abs(exp(x)) would become exp(re(x)) and
            # Max of array code would compare it (Max and Min are not sp.Function subclasses)
            rebuilt = isinstance(e, (sp.Function, sp.Max, sp.Min))
            code = e.func(*args, evaluate=False) if rebuilt else e.func(*args)
            return Value(code, tuple(axes))
        if isinstance(e, sp.Idx):
            raise LoweringError(f"cannot lower '{e}' to array code (the index is used as a "
                                "number, not to index an array)")
        raise LoweringError(f"cannot lower '{e}' to array code")

    def piecewise(self, e: Piecewise, order: list[sp.Idx]) -> Value:
        """A Piecewise with its branch values and both sides of every comparison lowered and
        aligned over one set of axes (the printers spell it as nested ``where``)."""
        leaves = [v for value, condition in e.args for v in [value, *(
            side for comparison in condition.atoms(sp.core.relational.Relational)
            for side in comparison.args)]]
        values = {leaf: self.expr(leaf, order) for leaf in dict.fromkeys(leaves)}
        axes = _union(list(values.values()), order)
        aligned = {leaf: _align(v, axes) if v.axes else v.code for leaf, v in values.items()}

        def rebuilt(node):
            if isinstance(node, sp.core.relational.Relational):
                return node.func(*[aligned[side] for side in node.args], evaluate=False)
            return node.func(*map(rebuilt, node.args)) if isinstance(node, (sp.And, sp.Or)) \
                else node

        pairs = [ExprCondPair(aligned[value], rebuilt(condition))
                 for value, condition in e.args]
        return Value(Piecewise(*pairs, evaluate=False), tuple(axes))

    def read(self, e: sp.Indexed, order: list[sp.Idx]) -> Value:
        label = e.base.label  # the label's own name: str() would print it
        name = label.name if isinstance(label, sp.Symbol) else name_of(e)
        code: sp.Expr = ArrayRef(name)
        indices = list(e.indices)
        if any(not isinstance(k, sp.Idx) and flatten_parts(k) for k in indices):
            shape, split = [], []
            for k, size in zip(indices, self.shape(name)):
                parts = flatten_parts(k) if not isinstance(k, sp.Idx) else None
                shape.extend([idx_size(p) for p in parts] if parts else [size])
                split.extend(parts if parts else [k])
            code, indices = Reshape(code, sp.Tuple(*shape)), split
        sizes = self._read_sizes(name, e.indices)
        window = [_slice_of(k, size) for k, size in zip(indices, sizes)]
        axes = [k if isinstance(k, sp.Idx) else affine_parts(k)[0][0] for k, w in
                zip(indices, window) if w is not None]
        if all(w is not None for w in window) and len(set(axes)) == len(axes):
            if any(w != (0, 0) for w in window):  # x[i, j + H] -> x[:, H:2*H]
                code = Sliced(code, sp.Tuple(*[sp.Tuple(*w) for w in window]))
            return Value(code, tuple(axes))
        return self.gather(code, indices, order, sizes)  # labels, gathers, diagonals, windows

    def _read_sizes(self, name: str, indices) -> list:
        """The size of each axis a read indexes, a flattened index split into its parts'."""
        sizes = []
        for k, size in zip(indices, self.shape(name)):
            parts = flatten_parts(k) if not isinstance(k, sp.Idx) else None
            sizes.extend([idx_size(p) for p in parts] if parts else [size])
        return sizes

    def gather(self, code: sp.Expr, indices: list, order: list[sp.Idx], sizes=None) -> Value:
        """Advanced indexing: label reads (``logprobs[i, Y[i]]``), gathers (``C[X[i, t], e]``),
        diagonals (``G[j, j]`` as ``G[arange(d), arange(d)]``) and sliding windows
        (``x[i, p + u]`` as ``x[:, arange(P)[:, None] + arange(U)]``)."""
        computed = [k for k in indices if not isinstance(k, sp.Idx)]
        if sizes is not None:  # an Idx over part of its axis is read by arange, not whole
            computed += [k for k, size in zip(indices, sizes) if isinstance(k, sp.Idx)
                         and sp.expand(idx_size(k) - size) != 0]
        involved = {k for c in computed for k in free_indices(c)}
        involved |= {k for k in indices if isinstance(k, sp.Idx) and indices.count(k) > 1}
        advanced = [p for p, k in enumerate(indices) if not isinstance(k, sp.Idx) or k in involved]
        plain = [p for p in range(len(indices)) if p not in advanced]
        lead = min(advanced)
        if lead and max(advanced) - lead + 1 == len(advanced) and \
                any(affine_parts(indices[p]) for p in advanced):
            # one block of windows after whole axes: x[:, :, arange(P)[:, None] + arange(U)]
            # keeps the block in place in NumPy and torch alike, no transpose needed
            values = [self.affine(indices[p], order) if affine_parts(indices[p]) else
                      Value(Arange(idx_size(indices[p])), (indices[p],))
                      if isinstance(indices[p], sp.Idx) else self.index_values(indices[p], order)
                      for p in advanced]
            axes = _union(values, order)
            args = [Colon()] * lead + [_align(v, axes) if v.axes else v.code for v in values]
            return Value(Take(code, *args), tuple(indices[:lead]) + tuple(axes) +
                         tuple(indices[p] for p in plain if p > lead))
        if plain and min(plain) < max(advanced):
            perm = advanced + plain
            code = Transpose(code, sp.Tuple(*perm))
            indices = [indices[p] for p in perm]
            advanced, plain = list(range(len(advanced))), list(range(len(advanced), len(indices)))
        values = []
        for p in advanced:
            k = indices[p]
            values.append(Value(Arange(idx_size(k)), (k,)) if isinstance(k, sp.Idx)
                          else self.affine(k, order) if affine_parts(k)
                          else self.index_values(k, order))  # a label, or q + Z[i]
        axes = _union(values, order)
        args = [_align(v, axes) if v.axes else v.code for v in values]
        return Value(Take(code, *args), tuple(axes) + tuple(indices[p] for p in plain))

    def affine(self, index: sp.Expr, order: list[sp.Idx]) -> Value:
        """The values of ``p + u`` (``j + H``) as an integer array over its indices:
        ``arange(P)[:, None] + arange(U)``."""
        parts, offset = affine_parts(index)
        values = [Value(Arange(idx_size(k)), (k,)) for k in parts]
        axes = _union(values, order + [k for k in parts if k not in order])
        return Value(sp.Add(*[_align(v, axes) for v in values]) + offset, tuple(axes))

    def delta(self, e: sp.KroneckerDelta, order: list[sp.Idx]) -> Value:
        a, b = e.args
        if isinstance(a, sp.Idx) and isinstance(b, sp.Idx):
            if sp.expand(idx_size(a) - idx_size(b)) != 0:  # ranges of two lengths: np.eye(N, M)
                return Value(Eye(idx_size(a), idx_size(b)), (a, b))
            return Value(Eye(idx_size(a)), (a, b))
        row, label = (a, b) if isinstance(a, sp.Idx) else (b, a)
        if not isinstance(row, sp.Idx) or row in free_indices(label):
            # both sides vary along one index: compared element by element
            left, right = self.index_values(a, order), self.index_values(b, order)
            axes = _union([left, right], order)
            return Value(Equal(*[_align(v, axes) if v.axes else v.code for v in (left, right)]),
                         tuple(axes))
        value = self.affine(label, order) if affine_parts(label) else \
            self.index_values(label, order)
        return Value(OneHot(value.code, idx_size(row)), value.axes + (row,))

    def sum(self, e: sp.Sum, order: list[sp.Idx]) -> Value:
        bound = [limit[0] for limit in e.limits]
        padded = self.padded(e, bound, order) or self.flattened(e, bound, order)
        if padded is not None:
            return padded
        inner = list(order) + [k for k in bound if k not in order]
        scale, body = e.function.as_coeff_Mul()
        parts = [(f, self.expr(f, inner)) for f in sp.Mul.make_args(body)]
        arrays = [value for _, value in parts if value.axes]
        scale = scale * sp.Mul(*[value.code for _, value in parts if not value.axes])
        kept = [k for k in _union(arrays, inner) if k not in bound]
        if len(arrays) == 2 and len(bound) == 1:
            product = self.matmul(arrays, bound[0], kept)
            if product is not None:
                return Value(scale * product, tuple(kept))
        widest = max((len(f.axes) for f in arrays), default=0)
        if len(arrays) >= 2 and len(_union(arrays, inner)) > max(widest, len(kept)):
            value = self.contract([f for f, v in parts if v.axes], bound, kept, inner)
            missing = sp.Mul(*[idx_size(k) for k in bound if k not in _union(arrays, inner)])
            return Value(scale * missing * value.code, value.axes)
        value = self.expr(sp.Mul(*[f for f, v in parts if v.axes]), inner)  # scale is outside
        axes = list(value.axes)
        positions = tuple(axes.index(k) for k in bound if k in axes)
        summed = SumAxes(value.code, sp.Tuple(*positions), len(axes)) if positions else value.code
        missing = sp.Mul(*[idx_size(k) for k in bound if k not in axes])
        return Value(scale * missing * summed, tuple(k for k in axes if k not in bound))

    def flattened(self, e: sp.Sum, bound: list[sp.Idx], order: list[sp.Idx]) -> Value | None:
        """``Sum(KroneckerDelta(c, d*t + e)*g[i, t, e], t, e)`` (``c`` over ``T*d``: the adjoint
        of an unflattening read ``x[i, d*t + e]``) as ``g`` with its ``(t, e)`` axes merged
        row-major into ``c``'s: a reshape, no one-hot matrix."""
        for delta in [f for f in sp.Mul.make_args(e.function) if isinstance(f, sp.KroneckerDelta)]:
            for row, label in (delta.args, delta.args[::-1]):
                parts = flatten_parts(label) if isinstance(row, sp.Idx) else None
                if not parts or row in bound or not set(parts) <= set(bound) or \
                        sp.expand(idx_size(row) - index_size(label, self.program)) != 0:
                    continue
                rest = sp.Mul(*[f for f in sp.Mul.make_args(e.function) if f is not delta])
                if row in free_indices(rest):
                    continue
                others = [k for k in bound if k not in parts]
                value = self.expr(sp.Sum(rest, *others) if others else rest,
                                  list(order) + list(parts))
                if not set(parts) <= set(value.axes):
                    continue
                kept = [k for k in order if k in value.axes and k not in parts]
                axes = kept + list(parts)
                code = _align(value, axes)
                if list(value.axes) != axes:
                    code = broadcast_to(code, sp.Tuple(*[idx_size(k) for k in axes]))
                shape = [idx_size(k) for k in kept] + [idx_size(row)]
                return Value(Reshape(code, sp.Tuple(*shape)), tuple(kept) + (row,))
        return None

    def padded(self, e: sp.Sum, bound: list[sp.Idx], order: list[sp.Idx]) -> Value | None:
        """``Sum(KroneckerDelta(l, j + H)*g[i, j], j)`` (``l`` free over a longer axis) as ``g``
        padded with zeros along that axis: the adjoint of a slice read, no one-hot matrix."""
        for delta in [f for f in sp.Mul.make_args(e.function) if isinstance(f, sp.KroneckerDelta)]:
            for row, label in (delta.args, delta.args[::-1]):
                if not isinstance(row, sp.Idx) or row in bound:
                    continue
                parts, offset = affine_parts(label) or (([label], sp.S.Zero)
                                                        if isinstance(label, sp.Idx) else ([], 0))
                if len(parts) != 1 or parts[0] not in bound or parts[0] == row:
                    continue
                (k,) = parts
                after = sp.expand(idx_size(row) - offset - idx_size(k))
                if after.is_nonnegative is not True or sp.expand(offset).is_nonnegative is not True:
                    continue
                rest = sp.Mul(*[f for f in sp.Mul.make_args(e.function) if f is not delta])
                if row in free_indices(rest):
                    continue
                others = [b for b in bound if b != k]
                inner = list(order) + [k]
                value = self.expr(sp.Sum(rest, *others) if others else rest, inner)
                if k not in value.axes:
                    continue
                axes = _union([value], inner)
                code = _align(value, axes)
                position = axes.index(k)
                return Value(Pad(code, position, offset, after, len(axes)),
                             tuple(row if a == k else a for a in axes))
        return None

    def contract(self, factors: list[sp.Expr], bound: list[sp.Idx], kept: list[sp.Idx],
                 inner: list[sp.Idx]) -> Value:
        """``Sum_bound prod(factors)`` as a hand writer computes it: factors over the same axes (or
        a subset of another's) multiply elementwise first; the operands left are contracted two at
        a time, the pair with the smallest result first, each pair as a matmul, a batched matmul
        (``@`` over 3-D arrays) or, where no matmul fits, a two-array einsum. No einsum ever
        takes more than two arrays, so no intermediate is larger than the operands or result."""
        groups: list[list[sp.Expr]] = []  # widest factors first, each joining a wider group
        for f in sorted(factors, key=lambda f: -len(free_indices(f))):
            axes = set(free_indices(f))
            home = next((g for g in groups if axes <= set(free_indices(sp.Mul(*g)))), None)
            if home is None:
                groups.append([f])
            else:
                home.append(f)
        operands = [self.expr(sp.Mul(*g), list(inner)) for g in groups]
        summed = set(bound)
        operands = _presummed(operands, summed, inner)
        while len(operands) > 2:
            def result_axes(p, q):
                others = {k for m, v in enumerate(operands) if m not in (p, q) for k in v.axes}
                union = _union([operands[p], operands[q]], inner)
                return [k for k in union if k not in summed or k in others], union
            pairs = [(p, q) for p in range(len(operands)) for q in range(p + 1, len(operands))]
            p, q = min(pairs, key=lambda pq: (len(result_axes(*pq)[0]), len(result_axes(*pq)[1]),
                                              pq))
            axes, union = result_axes(p, q)
            pair = self.contract_pair(operands[p], operands[q],
                                      [k for k in union if k not in axes], axes)
            operands = [v for m, v in enumerate(operands) if m not in (p, q)] + [pair]
            operands = _presummed(operands, summed, inner)
        if len(operands) == 1:
            (value,) = operands
            positions = tuple(value.axes.index(k) for k in bound if k in value.axes)
            if not positions:
                return value
            return Value(SumAxes(value.code, sp.Tuple(*positions), len(value.axes)),
                         tuple(k for k in value.axes if k not in bound))
        union = _union(operands, inner)
        return self.contract_pair(*operands, [k for k in union if k in summed], list(kept))

    def contract_pair(self, left: Value, right: Value, summed: list[sp.Idx],
                      kept: list[sp.Idx]) -> Value:
        """``Sum_summed left*right`` over the axes ``kept`` (in that order where it is free to
        choose): an index only one side has is summed on that side first."""
        def presum(value, other):
            alone = [k for k in summed if k in value.axes and k not in other.axes]
            if not alone:
                return value
            positions = tuple(value.axes.index(k) for k in alone)
            return Value(SumAxes(value.code, sp.Tuple(*positions), len(value.axes)),
                         tuple(k for k in value.axes if k not in alone))
        left, right = presum(left, right), presum(right, left)
        common = [k for k in summed if k in left.axes and k in right.axes]
        if not common:  # an outer (or elementwise) product
            axes = _union([left, right], kept)
            return Value(_align(left, axes) * _align(right, axes), tuple(axes))
        batch = [k for k in kept if k in left.axes and k in right.axes]
        left_free = [k for k in left.axes if k not in right.axes]
        right_free = [k for k in right.axes if k not in left.axes]
        if len(common) == 1 and not batch:
            order = [k for k in kept if k in left_free + right_free]
            product = self.matmul([left, right], common[0], order)
            if product is not None:
                return Value(product, tuple(order))
        if len(common) == 1 and batch and len(left_free) == 1 and len(right_free) == 1:
            (k,) = common
            if kept.index(left_free[0]) > kept.index(right_free[0]):
                left, right, left_free, right_free = right, left, right_free, left_free
            code = MatMul(_oriented(left, batch + left_free + [k]),
                          _oriented(right, batch + [k] + right_free))
            return Value(code, tuple(batch + left_free + right_free))
        axes = [k for k in kept if k in left.axes or k in right.axes]
        return Value(self.einsum([left, right], axes), tuple(axes))

    def matmul(self, arrays: list[Value], k: sp.Idx, kept: list[sp.Idx]) -> sp.Expr | None:
        left, right = arrays
        if k not in left.axes or k not in right.axes:
            return None
        left_free = [a for a in left.axes if a != k]
        right_free = [a for a in right.axes if a != k]
        if len(left_free) > 1 or len(right_free) > 1 or set(left_free) & set(right_free):
            return None
        if left_free and right_free and kept.index(left_free[0]) > kept.index(right_free[0]) \
                or right_free and not left_free:  # matrix @ vector reads better than v @ M.T
            left, right, left_free, right_free = right, left, right_free, left_free
        a = _oriented(left, left_free + [k])
        b = _oriented(right, [k] + right_free)
        return MatMul(a, b)

    def einsum(self, arrays: list[Value], kept: list[sp.Idx]) -> sp.Expr:
        letters: dict[sp.Idx, str] = {}
        for k in [k for v in arrays for k in v.axes]:
            if k not in letters:
                name = str(k)[0].lower()
                letters[k] = name if len(name) == 1 and name.isalpha() and \
                    name not in letters.values() else next(
                        c for c in "abcdefghijklmnopqrstuvwxyz" if c not in letters.values())
        spec = ",".join("".join(letters[k] for k in v.axes) for v in arrays)
        spec += "->" + "".join(letters[k] for k in kept)
        return Einsum(sp.Symbol(spec), *[v.code for v in arrays])


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


def lower(program: Program, forward: Program | None = None) -> list[ArrayStatement]:
    """Every statement of ``program`` as an array statement, after the stabilising rewrites of
    ``symderive.stabilize``, a contraction that several of them (or one, twice) compute done
    once (``shared_contractions``). A statement that does not lower is a ``LoweringError`` naming
    the program and the statement; ``forward``, given when ``program`` is its backward, names
    the forward statements behind a gradient statement."""
    from .stabilize import stabilized  # stabilize reads simplify, which reads this module

    written = program
    program, _ = stabilized(program)  # log of exp folded, label reads through maps
    lowerer = Lowerer(program)
    statements = []
    for original, s in zip(written.body, program.body):  # stabilized keeps them one to one
        try:
            statements.append(lowerer.statement(s))
        except LoweringError as error:
            where, advice = _context(original, forward)
            raise LoweringError(f"{program.name}: {where}: {error}"
                                + (f"; {advice}" if advice else "")) from None
    return shared_contractions(statements, program)


def _context(statement: Assign, forward: Program | None) -> tuple[str, str]:
    """The statement that did not lower, as the user can find it (a forward statement with its
    file line; a gradient statement with the forward statements that read what it
    differentiates), and what to change: said only where the user wrote the statement (it has a
    file line), not for one symderive made (the double backward's)."""
    if forward is None:
        return _quoted(statement), _REWRITE_FORWARD if statement.source else ""
    name = statement.name[1:]  # the adjoint of ``x`` is ``dx``
    readers = [s for s in forward.body  # an array read, or a scalar's symbol
               if name in {name_of(r) for r in s.rhs.atoms(sp.Indexed)}
               | {symbol.name for symbol in s.rhs.atoms(sp.Symbol)}]
    read = "; ".join(_quoted(s) for s in readers)
    where = f"gradient statement '{statement}'" + (f" (the gradient of {name}, read by {read})"
                                                  if read else "")
    return where, _REWRITE_READ if any(s.source for s in readers) else ""


def _quoted(statement: Assign) -> str:
    return f"statement '{statement}'" + (f" ({statement.source})" if statement.source else "")


_REWRITE_FORWARD = ("write the statement another way: an index may index arrays, bound a Sum or "
                    "stand in a KroneckerDelta; values computed from indices (a mask such as "
                    "Heaviside(i - j)) are an input to declare and read")
_REWRITE_READ = ("this gradient has no vectorised form yet: write that read another way "
                 "(declare the input over the axes it is read with)")


def shared_contractions(statements: list[ArrayStatement], program: Program
                        ) -> list[ArrayStatement]:
    """A matmul or einsum computed more than once, over arrays no statement here assigns, becomes
    one statement of its own before its first use (``t0 = dout @ U.T``), read by name after: the
    gradients of ``a`` and ``b`` in ``a*silu(b) @ U`` both start from ``dout @ U.T``, and a hand
    writer computes it once. Values no statement assigns cannot change between the uses."""
    assigned = {s.name for s in statements}
    taken = emitted_names(program) | assigned
    counter = 0
    while True:
        counts: dict[sp.Expr, int] = {}
        for s in statements:
            for node in sp.preorder_traversal(s.code):
                if isinstance(node, (MatMul, Einsum)):
                    counts[node] = counts.get(node, 0) + 1
        shared = [node for node, count in counts.items() if count > 1
                  and not {str(x) for x in node.atoms(ArrayRef)} & assigned]
        if not shared:
            return statements
        node = max(shared, key=lambda e: (sp.count_ops(e), -list(counts).index(e)))
        while f"t{counter}" in taken:
            counter += 1
        name = f"t{counter}"
        taken.add(name)
        first = next(m for m, s in enumerate(statements) if s.code.has(node))
        ref = ArrayRef(name)
        statements = statements[:first] + [ArrayStatement(name, node)] + [
            ArrayStatement(s.name, s.code.xreplace({node: ref}), s.accumulate)
            for s in statements[first:]]

