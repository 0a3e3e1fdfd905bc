"""Convolutions, as ``Lowerer`` methods (a mixin): a sum of two reads in which one read slides a
window over the other's (``Sum(w[o, c, u]*x[i, c, s*p + u], c, u)``) is a correlation, and a sum
that scatters such a product back through deltas (``Sum(KroneckerDelta(l, s*p + u)*g[i, o, p]*
w[o, c, u], o, p, u)``, the adjoint of the window read) is a transposed convolution; both lower to
one library convolution instead of a gathered copy of every window and a scatter-add. The match
is on the roles of the indices alone, never on names: an index in both reads and summed is an
input channel, one in the window's read alone a batch axis, one in the other read alone an output
channel, and each window position pairs an output index with a kernel tap (its coefficients are
the stride and the dilation). A weight's gradient (``Sum(g[i, o, p]*x[i, c, p + u], i, p)``) is
the same correlation with the roles swapped. Anything else (an offset, an index free in both
reads, more than three window axes) is left to the general lowering."""
from __future__ import annotations

import sympy as sp

from ..algebra.terms import is_scalar
from ..program.ir import Assign, free_indices, idx_size, linear_parts, name_of
from .arrays import Conv, Pad, Reshape, Sliced, Transpose, Value, _align, _slice_of

_MOST_AXES = 3  # torch's convolutions have 1, 2 or 3 spatial axes


def _positive(size: sp.Expr) -> bool:
    """Whether ``size`` is at least 0 for every positive value of the sizes it names."""
    return sp.expand(size).is_nonnegative is True


def _two_reads(function: sp.Expr):
    """``(scalar factor, [read, read], deltas)`` of a summand that is two array reads times
    deltas and scalars, else None."""
    reads, deltas, scalars = [], [], []
    for factor in sp.Mul.make_args(function):
        if isinstance(factor, sp.Indexed):
            reads.append(factor)
        elif isinstance(factor, sp.KroneckerDelta):
            deltas.append(factor)
        elif is_scalar(factor):
            scalars.append(factor)
        else:
            return None
    return (sp.Mul(*scalars), reads, deltas) if len(reads) == 2 else None


def _layout(code: sp.Expr, axes: list, groups: list[list], sizes: dict) -> sp.Expr:
    """``code`` (axes ``axes``) permuted so that the axes of each group follow one another, and
    every group but the spatial tail merged into one axis (a missing group: an axis of 1)."""
    order = [k for group in groups for k in group]
    if order != axes:
        code = Transpose(code, sp.Tuple(*[axes.index(k) for k in order]))
    merged = [sp.Mul(*[sizes[k] for k in group]) for group in groups[:2]] + \
        [sizes[k] for k in groups[2]]
    if any(len(group) != 1 for group in groups[:2]):
        code = Reshape(code, sp.Tuple(*merged))
    return code


class Convolutions:
    """Correlations and transposed convolutions. Mixed into ``Lowerer``, whose ``program``,
    ``shape``, ``array_ref``, ``expr`` and ``within`` they use."""

    def _sizes(self, read: sp.Indexed) -> list:
        return list(self.shape(name_of(read)))

    def correlation(self, e: sp.Sum, bound: list[sp.Idx]) -> Value | None:
        """``Sum(w[o, c, u]*x[i, c, s*p + d*u], c, u)`` as ``conv(x, w, stride=s, dilation=d)``."""
        function, bound = self._resolved(e.function, list(bound))
        found = _two_reads(function)
        if found is None or found[2]:
            return None
        scale, reads, _ = found
        free = set(free_indices(e))
        for signal, kernel in (reads, reads[::-1]):
            made = self._correlation(signal, kernel, set(bound), free)
            if made is not None:
                code, axes = made
                return Value(self.expr(scale, []).code * code, tuple(axes))
        return None

    def _resolved(self, function: sp.Expr, bound: list[sp.Idx]):
        """``function`` with each delta that pins a summed index to positions inside its range
        (``KroneckerDelta(l, p + u)``, ``l`` summed over ``P + U - 1``) resolved: ``l`` replaced
        by the positions and no longer summed (the sum over ``l`` has that one nonzero term)."""
        while True:
            for delta in [f for f in sp.Mul.make_args(function)
                          if isinstance(f, sp.KroneckerDelta)]:
                pinned = next(((row, position) for row, position in (delta.args, delta.args[::-1])
                               if isinstance(row, sp.Idx) and row in bound
                               and row not in free_indices(position)
                               and linear_parts(position) is not None
                               and self.within(position, idx_size(row))), None)
                if pinned is not None:
                    row, position = pinned
                    rest = sp.Mul(*[f for f in sp.Mul.make_args(function) if f != delta])
                    function, bound = rest.xreplace({row: position}), \
                        [k for k in bound if k != row]
                    break
            else:
                return function, bound

    def _whole(self, read: sp.Indexed, cut: dict | None = None) -> sp.Expr:
        """The array ``read`` reads, cut to what its plain indices range over (``x[i, j]`` with
        ``j`` over ``H`` of an axis of ``2*H``) and to ``cut``'s (start, stop) by axis."""
        cut = dict(cut or {})
        for axis, (index, length) in enumerate(zip(read.indices, self._sizes(read))):
            if isinstance(index, sp.Idx) and _slice_of(index, length) != (0, 0):
                cut[axis] = _slice_of(index, length)
        code = self.array_ref(read)
        if cut:
            code = Sliced(code, sp.Tuple(*[sp.Tuple(*cut.get(axis, (0, 0)))
                                           for axis in range(len(read.indices))]))
        return code

    def _correlation(self, signal: sp.Indexed, kernel: sp.Indexed, bound: set, free: set):
        taps = list(kernel.indices)
        if any(not isinstance(k, sp.Idx) for k in taps) or len(set(taps)) != len(taps):
            return None
        plain = [k for k in signal.indices if isinstance(k, sp.Idx)]
        windows = []  # (position in signal, output index, stride, tap, dilation)
        for position, index in enumerate(signal.indices):
            if isinstance(index, sp.Idx):
                continue
            found = linear_parts(index)
            if found is None or found[1] != 0 or len(found[0]) != 2:
                return None
            (a, sa), (b, sb) = found[0].items()
            if a in taps and b not in taps:
                (a, sa), (b, sb) = (b, sb), (a, sa)
            if b not in taps or a in taps or b not in bound or a in bound:
                return None
            windows.append((position, a, sa, b, sb))
        used = plain + [w[1] for w in windows] + [w[3] for w in windows]
        if not windows or len(windows) > _MOST_AXES or len(set(used)) != len(used):
            return None
        channels = [k for k in plain if k in bound]
        batch = [k for k in plain if k not in bound]
        outputs = [k for k in taps if k not in channels and k not in [w[3] for w in windows]]
        if any(k not in taps for k in channels) or any(k in taps for k in batch) or \
                any(k in bound for k in outputs) or \
                set(bound) != set(channels) | {w[3] for w in windows} or \
                set(free) != set(batch) | set(outputs) | {w[1] for w in windows}:
            return None
        sizes = {k: idx_size(k) for k in used + outputs}
        lengths = self._sizes(signal)
        spans = [sp.expand((sizes[q] - 1) * s + (sizes[k] - 1) * d + 1)
                 for _, q, s, k, d in windows]
        if any(not _positive(lengths[w[0]] - span) for w, span in zip(windows, spans)):
            return None  # a window past the axis's end: the validator refuses it, so does this
        example = dict(self.program.sizes)
        # the "kernel" the longer read: a kernel's adjoint (the weight-gradient form below)
        weight_form = sp.Mul(*[sizes[w[3]] for w in windows]).xreplace(example) > \
            sp.Mul(*[sizes[w[1]] for w in windows]).xreplace(example)

        def cut(window, span):
            """Whether the axis is read only as far as the windows reach: not where the tail is
            fewer positions than the step between this sum's output positions (the coefficient
            of its free index), which the convolution's floor skips, so no strided copy is
            made. The weight-gradient kernel also checks the tail against the convolution it
            differentiates, whose outputs are the other coefficient apart: fewer than both."""
            tail = sp.expand(lengths[window[0]] - span)
            step = min(window[2], window[4]) if weight_form else window[2]
            return tail != 0 and not (tail.is_Integer and tail < step)

        code = self._whole(signal, {w[0]: (0, span) for w, span in zip(windows, spans)
                                    if cut(w, span)})
        names = [k if isinstance(k, sp.Idx) else ("window", p)
                 for p, k in enumerate(signal.indices)]
        window_names = [("window", w[0]) for w in windows]
        sizes.update({("window", w[0]): span for w, span in zip(windows, spans)})
        starts, tap_indices = [w[1] for w in windows], [w[3] for w in windows]
        strides, dilations = (sp.Tuple(*[w[m] for w in windows]) for m in (2, 4))
        if weight_form:
            # the "kernel" is the longer read: a kernel's adjoint, dw = Sum(g*x, i, p), where
            # the channels summed are a batch: the weight-gradient kernel, its stride and
            # dilation the other way round
            g = _layout(self._whole(kernel), taps, [channels, outputs, tap_indices], sizes)
            x = _layout(code, names, [channels, batch, window_names], sizes)
            conv = Conv(g, x, dilations, strides, sp.Integer(2))
            axes = outputs + batch + starts
        else:
            x = _layout(code, names, [batch, channels, window_names], sizes)
            w = _layout(self._whole(kernel), taps, [outputs, channels, tap_indices], sizes)
            conv = Conv(x, w, strides, dilations, sp.S.Zero)
            axes = batch + outputs + starts
        if len(batch) != 1 or len(outputs) != 1:
            conv = Reshape(conv, sp.Tuple(*[sizes[k] for k in axes]))
        return conv, axes

    def transposed_convolution(self, s: Assign, lhs_axes: list[sp.Idx]) -> sp.Expr | None:
        """``dx[i, c, l] = Sum(KroneckerDelta(l, s*p + d*u)*g[i, o, p]*w[o, c, u], o, p, u)`` (the
        adjoint of a window read) as ``conv_transpose(g, w, stride=s, dilation=d)``, padded with
        zeros where ``l``'s axis is longer than the windows reach."""
        coeff, rest = s.rhs.as_coeff_Mul()
        if not isinstance(rest, sp.Sum) or len(lhs_axes) != len(set(lhs_axes)):
            return None
        found = _two_reads(rest.function)
        if found is None or not found[2]:
            return None
        scale, reads, deltas = found
        bound = {limit[0] for limit in rest.limits}
        spreads = []  # (lhs index, {read: (index, coefficient)})
        for delta in deltas:
            for row, position in (delta.args, delta.args[::-1]):
                parts = linear_parts(position)
                if isinstance(row, sp.Idx) and row in lhs_axes and parts and parts[1] == 0 \
                        and len(parts[0]) == 2 and set(parts[0]) <= bound:
                    break
            else:
                return None
            (a, sa), (b, sb) = parts[0].items()
            if a in reads[0].indices and b in reads[1].indices and a not in reads[1].indices \
                    and b not in reads[0].indices:
                spreads.append((row, position, ((a, sa), (b, sb))))
            elif b in reads[0].indices and a in reads[1].indices and \
                    b not in reads[1].indices and a not in reads[0].indices:
                spreads.append((row, position, ((b, sb), (a, sa))))
            else:
                return None
        if len(spreads) > _MOST_AXES:
            return None
        example = dict(self.program.sizes)
        # the read whose spatial axes are longer is the convolution's input, the other its kernel
        extent = [sp.Mul(*[idx_size(sp_[2][m][0]) for sp_ in spreads]) for m in (0, 1)]
        first = sp.sympify(extent[0]).xreplace(example) >= sp.sympify(extent[1]).xreplace(example)
        m_in, m_k = (0, 1) if first else (1, 0)
        data, kernel = reads[m_in], reads[m_k]
        steps = [(row, sp_[m_in][0], sp_[m_in][1], sp_[m_k][0], sp_[m_k][1])
                 for row, _, sp_ in spreads]
        for delta_row, position, _ in spreads:
            if not self.within(position, idx_size(delta_row)):
                return None  # a position past the axis: the delta is 0 there, not a scatter
        rows, qs, taps = [t[0] for t in steps], [t[1] for t in steps], [t[3] for t in steps]
        if any(not isinstance(k, sp.Idx) for k in data.indices + kernel.indices):
            return None
        data_axes, kernel_axes = list(data.indices), list(kernel.indices)
        if len(set(data_axes)) != len(data_axes) or len(set(kernel_axes)) != len(kernel_axes):
            return None
        channels = [k for k in data_axes if k not in qs and k in bound]
        batch = [k for k in data_axes if k not in qs and k not in bound]
        outputs = [k for k in kernel_axes if k not in taps and k not in bound]
        if any(k not in kernel_axes for k in channels) or \
                any(k in kernel_axes for k in batch) or any(k in data_axes for k in outputs) or \
                {k for k in kernel_axes if k not in taps and k in bound} != set(channels) or \
                bound != set(channels) | set(qs) | set(taps) or \
                set(lhs_axes) != set(batch) | set(outputs) | set(rows):
            return None
        sizes = {k: idx_size(k) for k in data_axes + kernel_axes + rows}
        x = _layout(self._whole(data), data_axes, [batch, channels, qs], sizes)
        w = _layout(self._whole(kernel), kernel_axes, [channels, outputs, taps], sizes)
        reach = [sp.expand((sizes[q] - 1) * st + (sizes[k] - 1) * d + 1)
                 for _, q, st, k, d in steps]
        code = Conv(x, w, sp.Tuple(*[t[2] for t in steps]), sp.Tuple(*[t[4] for t in steps]),
                    sp.S.One)
        for axis, (row, span) in enumerate(zip(rows, reach)):
            if sp.expand(sizes[row] - span) != 0:  # positions no window reaches: zeros
                code = Pad(code, 2 + axis, 0, sp.expand(sizes[row] - span), 2 + len(rows))
        axes = batch + outputs + rows
        if len(batch) != 1 or len(outputs) != 1:
            code = Reshape(code, sp.Tuple(*[sizes[k] for k in axes]))
        return coeff * self.expr(scale, []).code * _align(Value(code, tuple(axes)), lhs_axes)
