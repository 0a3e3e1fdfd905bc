"""Sums, as ``Lowerer`` methods (a mixin): a delta that merges axes is a reshape and one that
shifts an axis a zero pad; a reduction is ``.sum(axes)``; a contraction of several arrays is done
as a hand writer does it, two operands at a time, each pair a matmul, a batched matmul or a
two-array einsum, the pair with the smallest result first, so no intermediate is larger than its
operands or result."""
from __future__ import annotations

import sympy as sp

from ..program.ir import (
    affine_parts,
    flatten_parts,
    free_indices,
    idx_size,
    index_size,
)
from .arrays import (
    Einsum,
    MatMul,
    Pad,
    Reshape,
    SumAxes,
    Value,
    _align,
    _oriented,
    _presummed,
    _union,
    broadcast_to,
)


def _contracts_apart(factor: sp.Expr) -> bool:
    """Whether ``factor`` is a sum with a term that is itself a contraction (two arrays over
    index sets neither of which holds the other): summed whole, such a sum is made over the union
    of its terms' indices first."""
    if not isinstance(factor, sp.Add):
        return False
    for term in factor.args:
        reads = [set(free_indices(f)) for f in sp.Mul.make_args(term) if f.has(sp.Indexed)]
        if any(not (a <= b or b <= a) for m, a in enumerate(reads) for b in reads[m + 1:]):
            return True
    return False


def merges_axes(row: sp.Expr, label: sp.Expr, bound, program) -> bool:
    """Whether ``KroneckerDelta(row, label)`` summed over ``bound`` merges axes row-major
    (``label`` a flattened ``d*t + e`` of summed indices covering ``row``'s range once): a
    reshape, which ``Contractions.flattened`` makes; no scatter is needed."""
    parts = flatten_parts(label) if isinstance(row, sp.Idx) else None
    return bool(parts) and row not in bound and set(parts) <= set(bound) and \
        sp.expand(idx_size(row) - index_size(label, program)) == 0


class Contractions:
    """Reductions and contractions. Mixed into ``Lowerer``, whose ``expr`` and ``program`` they use."""

    def sum(self, e: sp.Sum, order: list[sp.Idx]) -> Value:
        bound = [limit[0] for limit in e.limits]
        padded = self.padded(e, bound, order) or self.flattened(e, bound, order) or \
            self.correlation(e, bound)
        if padded is not None:
            return padded
        inner = list(order) + [k for k in bound if k not in order]
        scale, body = e.function.as_coeff_Mul()
        mixed = next((f for f in sp.Mul.make_args(body) if _contracts_apart(f)), None)
        if mixed is not None:
            # Sum_h (A[i,h]*Wr[d,h] + B[i,h]*Wn[d,h]) as one Sum per term, each a matmul: the sum
            # itself, made first, spans (i, h, d), an array larger than any operand
            rest = sp.Mul(*[f for f in sp.Mul.make_args(body) if f is not mixed])
            return self.expr(sp.Add(*[sp.Sum(scale * term * rest, *e.limits)
                                      for term in sp.Add.make_args(mixed)]), order)
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
                if not merges_axes(row, label, bound, self.program):
                    continue
                parts = flatten_parts(label)
                rest = sp.Mul(*[f for f in sp.Mul.make_args(e.function) if f is not delta])
                if row in free_indices(rest):
                    continue
                others = [k for k in bound if k not in parts]
                value = self.expr(sp.Sum(rest, *others) if others else rest,
                                  list(order) + list(parts))
                # the merged axes stand where the value has them or else where the row does,
                # so that the reshape is a view
                axes, span = list(value.axes), len(parts)
                at = next((m for m in range(len(axes) - span + 1)
                           if axes[m:m + span] == list(parts)), None)
                if at is not None:
                    before, after = axes[:at], axes[at + span:]
                else:
                    before = [k for k in order[:order.index(row)] if k in value.axes
                              and k not in parts] if row in order else []
                    after = [k for k in order if k in value.axes and k not in parts + before]
                axes = before + list(parts) + after
                code = _align(value, axes)
                if set(value.axes) != set(axes):
                    code = broadcast_to(code, sp.Tuple(*[idx_size(k) for k in axes]))
                shape = [idx_size(k) for k in before] + [idx_size(row)] + \
                    [idx_size(k) for k in after]
                return Value(Reshape(code, sp.Tuple(*shape)), tuple(before + [row] + after))
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
