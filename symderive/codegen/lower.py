"""Lowering: index expressions to array expressions, shared by the NumPy and torch printers. Each
subexpression lowers to a ``Value`` whose elementwise arithmetic stays SymPy arithmetic on
aligned operands; reads become slices or advanced indexing, and nothing loops over data. The
statements that scatter (``scatter``) and the sums and contractions (``contraction``) are mixed
in. A statement with no vectorised form is a ``LoweringError`` naming the program and the
statement.
"""
from __future__ import annotations

import functools

import sympy as sp

from ..algebra.stabilize import stabilized
from ..algebra.terms import is_scalar
from ..program.ir import (
    Assign,
    Program,
    affine_parts,
    flatten_parts,
    free_indices,
    idx_size,
    index_size,
    linear_parts,
    name_of,
)
from ..program.names import emitted_names
from ..program.ops import ArgMax, ExprCondPair, Maximum, Piecewise
from .arrays import (
    Arange,
    ArgMaxAxis,
    ArrayRef,
    ArrayStatement,
    Colon,
    Einsum,
    AtLeast,
    Equal,
    Eye,
    LoweringError,
    MatMul,
    MaxAxis,
    OneHot,
    Reshape,
    Sliced,
    Take,
    Transpose,
    Value,
    Windows,
    Zeros,
    _align,
    _merged_matmuls,
    _merged_pads,
    _slice_of,
    _union,
    broadcast_to,
)
from .contraction import Contractions
from .convolution import Convolutions
from .scatter import Scatters


class Lowerer(Scatters, Contractions, Convolutions):
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
            scatter = self.transposed_convolution(s, lhs_axes) or \
                self.window_scatter(s, lhs_axes) or self.flat_scatter(s, lhs_axes)
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
        if isinstance(e, sp.Heaviside) and _of_indices(e.args[0]):
            return self.index_step(e, order)
        if isinstance(e, (sp.Add, sp.Mul, sp.Pow, sp.Function, sp.Max, sp.Min)):
            values = [self.expr(arg, order) for arg in e.args]
            if isinstance(e, sp.Add):
                values = _merged_matmuls(_merged_pads(values))
            axes = _union(values, order)
            args = [_align(v, axes) if v.axes else v.code for v in values]
            # a function is rebuilt as written: evaluated, Abs(exp(x)) would become exp(re(x)) and
            # Max of array code would compare it (Max and Min are not sp.Function subclasses)
            rebuilt = isinstance(e, (sp.Function, sp.Max, sp.Min))
            if isinstance(e, (sp.Max, sp.Min)) and len(args) > 2:
                # SymPy flattens Max(Max(x, p), 0) into one Max of three; the libraries'
                # maximum takes two (NumPy's third argument is where to write the result)
                code = functools.reduce(lambda a, b: e.func(a, b, evaluate=False), args)
            else:
                code = e.func(*args, evaluate=False) if rebuilt else e.func(*args)
            return Value(code, tuple(axes))
        if isinstance(e, sp.Idx):
            raise LoweringError(f"cannot lower '{e}' to array code (the index is used as a "
                                "number, not to index an array)")
        raise LoweringError(f"cannot lower '{e}' to array code")

    def index_step(self, e: sp.Heaviside, order: list[sp.Idx]) -> Value:
        """A step of an index expression (``Heaviside(t - s, 1)``: causal attention's mask) as a
        comparison of aranges, 1 or 0 in the working dtype: ``x >= 0`` where the step is 1 at 0,
        ``x > 0`` where it is 0 there; a step of 1/2 at 0 has no integer mask."""
        x, *at_zero = e.args
        at_zero = at_zero[0] if at_zero else sp.S.Half
        if at_zero not in (sp.S.Zero, sp.S.One):
            raise LoweringError(f"'{e}': a step of the indices is a mask only with its value at "
                                "0 given as 0 or 1 (Heaviside(t - s, 1) keeps s <= t)")
        value = self.index_values(x, order)
        return Value(AtLeast(value.code, sp.S.Zero, sp.Integer(at_zero == 0)), value.axes)

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

    @staticmethod
    def array_ref(e: sp.Indexed) -> ArrayRef:
        """The array a read reads, by the label's own name (str() would print it)."""
        label = e.base.label
        return ArrayRef(label.name if isinstance(label, sp.Symbol) else name_of(e))

    def read(self, e: sp.Indexed, order: list[sp.Idx]) -> Value:
        code: sp.Expr = self.array_ref(e)
        name = code.name
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
        windowed = self.windowed(code, indices, sizes)
        if windowed is not None:
            return windowed
        return self.gather(code, indices, order, sizes)  # labels, gathers, diagonals, windows

    def windowed(self, code: sp.Expr, indices: list, sizes: list) -> Value | None:
        """A read whose every index is a plain index or a window ``s*p + u`` (``u`` with
        coefficient 1; of ``p + u`` the shorter range is the window) as strided views: the
        axis cut to the windows' reach, then ``Windows`` (``x.unfold(2, U, s)``), no copy.
        None where an index is anything else or an index appears twice."""
        example = dict(self.program.sizes)
        cut, windows, plain = [], [], []
        for axis, (index, size) in enumerate(zip(indices, sizes)):
            if isinstance(index, sp.Idx):
                plain.append(index)
                cut.append(_slice_of(index, size))
                continue
            found = linear_parts(index)
            if found is None or len(found[0]) != 2 or found[1].free_symbols - set(example):
                return None
            taps = [k for k, c in found[0].items() if c == 1]
            if not taps:
                return None
            tap = min(taps, key=lambda k: idx_size(k).xreplace(example))
            (start, step), = [(k, c) for k, c in found[0].items() if k != tap]
            reach = sp.expand((idx_size(start) - 1) * step + idx_size(tap))
            offset = found[1]
            cut.append((0, 0) if offset == 0 and sp.expand(reach - size) == 0
                       else (offset, sp.expand(offset + reach)))
            windows.append((axis, start, tap, step))
            plain.append(start)
        taps = [w[2] for w in windows]
        if not windows or len(set(plain + taps)) != len(plain + taps):
            return None
        if any(c != (0, 0) for c in cut):
            code = Sliced(code, sp.Tuple(*[sp.Tuple(*c) for c in cut]))
        for axis, _, tap, step in windows:
            code = Windows(code, axis, idx_size(tap), step)
        return Value(code, tuple(plain + taps))

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
        """The values of ``p + u`` (``j + H``, a strided ``2*p + u``) as an integer array over its
        indices: ``arange(P)[:, None] + arange(U)``."""
        parts, offset = linear_parts(index)
        values = [Value(Arange(idx_size(k)), (k,)) for k in parts]
        axes = _union(values, order + [k for k in parts if k not in order])
        return Value(sp.Add(*[c * _align(v, axes) for v, c in zip(values, parts.values())])
                     + offset, tuple(axes))

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


def _of_indices(e: sp.Expr) -> bool:
    """Whether ``e`` is computed from indices (and numbers, sizes) alone, reading no array."""
    return bool(free_indices(e)) and not e.atoms(sp.Indexed) and \
        all(isinstance(x, sp.Idx) or x.is_integer for x in e.free_symbols)


def lower(program: Program, forward: Program | None = None) -> list[ArrayStatement]:
    """Every statement of ``program`` as an array statement, after the stabilising rewrites of
    ``algebra.stabilize``, a contraction that several of them (or one, twice) compute done
    once (``shared_contractions``). A statement that does not lower is a ``LoweringError`` naming
    the program and the statement; ``forward``, given when ``program`` is its backward, names
    the forward statements behind a gradient statement."""
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


_REWRITE_FORWARD = ("write the statement another way: an index may index arrays, bound a Sum, "
                    "stand in a KroneckerDelta or in a mask Heaviside(i - j, 1) (1 where j <= i; "
                    "Heaviside(i - j, 0) for j < i); other values computed from indices are an "
                    "input to declare and read")


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
