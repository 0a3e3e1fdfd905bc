"""The statements that write values into positions rather than compute them everywhere, as
``Lowerer`` methods (a mixin): a label delta added to an array (``d[arange(n), Y] -= 1/n``), the
adjoint of a gather or of a sliding window as a scatter-add along one axis, and a scatter at
computed positions that vary along the other axes (a window at a label's offset) on the array's
flat view. Each applies only where every position provably lies inside its axis."""
from __future__ import annotations

import sympy as sp

from ..algebra.terms import is_scalar
from ..program.ir import (
    Assign,
    free_indices,
    idx_size,
    linear_parts,
    name_of,
)
from ..program.ops import ArgMax
from .contraction import merges_axes
from .arrays import (
    AddAt,
    Arange,
    AxisScatterAdd,
    FlatScatterAdd,
    LoweringError,
    ScatterAdd,
    Value,
    _align,
    broadcast_to,
)


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


class Scatters:
    """Label updates and scatter-adds. Mixed into ``Lowerer``, whose ``expr`` and ``program`` they use."""

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
                found = linear_parts(label)
                if row not in lhs_axes or found is None or len(found[0]) < 2 or \
                        merges_axes(row, label, bound, self.program) or \
                        not all(k in bound for k in found[0]) or \
                        not self.within(label, idx_size(row)):
                    continue
                summand = coeff * sp.Mul(*[f for f in factors if f is not delta])
                if row in free_indices(summand):
                    continue
                parts = list(found[0])
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
                        row in free_indices(position) or \
                        merges_axes(row, position, bound, self.program):
                    continue
                summand = coeff * sp.Mul(*[f for f in factors if f is not delta])
                if row in free_indices(summand) or not self.within(position, idx_size(row)):
                    continue  # (a position outside the axis is a delta of 0: not a scatter)
                along = self._along(s, lhs_axes, row, position, summand, bound)
                if along is not None:
                    return along
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

    def _along(self, s: Assign, lhs_axes: list[sp.Idx], row: sp.Idx, position: sp.Expr,
               summand: sp.Expr, bound: list[sp.Idx]) -> sp.Expr | None:
        """The flat scatter's one-axis form, where a single summed index takes the row's
        place: ``dx[i, c, l] = Sum(KroneckerDelta(l, 2*p + ArgMax(...))*dy[i, c, p], p)`` adds
        ``dy[i, c, p]`` at ``dx[i, c, index[i, c, p]]`` (``scatter_add_`` along ``l``'s axis),
        the positions an array of the summand's shape, not of flat positions."""
        if len(bound) != 1 or bound[0] in lhs_axes:
            return None
        order = [bound[0] if k == row else k for k in lhs_axes]
        shape = sp.Tuple(*[idx_size(k) for k in order])
        try:
            values = self.expr(summand, list(order))
            places = self.index_values(position, list(order))
        except LoweringError:
            return None
        if any(k not in order for k in values.axes + places.axes):
            return None
        return AxisScatterAdd(sp.Tuple(*self.lhs_shape(s)),
                              broadcast_to(_align(places, order), shape),
                              broadcast_to(_align(values, order) if values.axes
                                           else values.code, shape), lhs_axes.index(row))

    def within(self, position: sp.Expr, size: sp.Expr) -> bool:
        """Whether every value of the integer index expression ``position`` lies in
        ``range(size)``, for every size: each index contributes ``0 .. size - 1`` times its
        coefficient, each label read ``0 .. classes - 1`` (labels are checked in range), each
        argmax over a window ``0 .. width - 1``, and what is left is a constant offset."""
        low = high = sp.S.Zero
        for term in sp.Add.make_args(sp.expand(position)):
            coeff, atom = term.as_coeff_Mul()
            if isinstance(atom, sp.Idx):
                top = idx_size(atom) - 1
            elif isinstance(atom, sp.Indexed) and self.program.integer(name_of(atom)):
                top = self.program.input(name_of(atom)).classes - 1
            elif isinstance(atom, ArgMax):  # a position in its window (max pooling's adjoint)
                top = idx_size(atom.limits[0][0]) - 1
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
