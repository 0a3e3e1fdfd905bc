"""Specialising rewrites of lowered code, as PyTensor's ``specialize`` phase: where a chain of
statements is exactly a known fused library kernel, one call replaces it, and a loss's upstream
adjoint is folded into the backward instead of scaling each gradient in a pass of its own. Each
rewrite matches the structure of the code (any program of that shape, never a layer by name) and
checks its side condition on it; where a condition does not hold the code is left as it is.

``softmax``: ``e = exp(u - m[:, None])``, ``s = e.sum(1)``, ``r = 1/s``, ``p = e*r[:, None]``
with ``m`` constant along the summed axis is ``p = softmax(u, 1)`` (a row constant cancels in the
quotient; the kernel shifts by the row maximum itself, so it is at least as stable). ``normaliser
read back``: where ``m`` is the row maximum of ``u``, ``exp(u - m)`` is exactly 1 at the maximum
and at most 1 elsewhere, so ``r = p.amax(1)``: the normaliser costs one read of ``p`` instead of
an ``exp`` pass and a temporary. ``log-softmax at the labels``: ``u[rows, Y] - m + log(r)`` with ``p = softmax(u, 1)``, ``m`` the
row maximum of ``u`` and ``r = p.amax(1)`` is ``log(p[rows, Y])`` (``p[i, Y] = exp(u[i, Y] - m)*r``),
so it is read from ``p`` where that probability is a normal float, as accurately, and the shifted
form (finite wherever ``u`` is) is computed only for rows where it underflows: the two row maxima
cost nothing when no row needs them. ``log-softmax``: ``u + c - log(exp(u + c).sum(a))`` with ``c`` constant along ``a`` is
``log_softmax(u, a)`` (the constant cancels). ``softmax adjoints``: the backward statements
``p*(g - (g*p).sum(a))`` and ``g - exp(y)*g.sum(a)`` (attention's score adjoint, log_softmax's
input adjoint) are exactly what ATen's softmax and log-softmax backward kernels compute, for any
values, so each is one fused call. ``seed``: a loss's backward is linear in the loss's adjoint,
so every term that reads no other adjoint is multiplied by it (``probs*(dloss/n)``), where the
scalar meets the small factors before the full-size array.
"""
from __future__ import annotations

import sympy as sp

from ..program.ops import ExprCondPair, Piecewise
from .arrays import (
    AddAt,
    Arange,
    AxisScatterAdd,
    ArrayOp,
    ArrayRef,
    ArrayStatement,
    BroadcastTo,
    Conv,
    Einsum,
    FlatScatterAdd,
    MatMul,
    MaxAxis,
    MaxValues,
    NewAxes,
    Pad,
    Reshape,
    ScatterAdd,
    Sliced,
    SumAxes,
    Take,
    Transpose,
    Windows,
    Zeros,
)


class Softmax(ArrayOp):
    """``Softmax(u, 1)`` -> ``torch.softmax(u, 1)``: ``exp(u)/exp(u).sum(1)`` in one fused
    pass per row, in ``u``'s dtype."""


class LogSoftmaxAt(ArrayOp):
    """``LogSoftmaxAt(p, u, Y)`` -> ``log_softmax_at(p, u, Y)`` (the emitted helper
    ``LOG_SOFTMAX_AT``): ``log_softmax(u, 1)[arange(n), Y]`` from ``p = softmax(u, 1)``."""


def _definitions(statements: list[ArrayStatement]) -> dict[str, sp.Expr]:
    """The code of each name assigned exactly once and not accumulated into."""
    names = [s.name for s in statements]
    return {s.name: s.code for s in statements if names.count(s.name) == 1 and not s.accumulate}


def _inserted_axis(pattern) -> int | None:
    """The one axis a ``NewAxes`` pattern inserts (``(0, 1)`` -> 1), or None."""
    inserted = [k for k, p in enumerate(pattern) if p == 1]
    return inserted[0] if len(inserted) == 1 else None


def _named(code: sp.Expr, definitions: dict) -> tuple[str | None, sp.Expr]:
    """``(name, its code)`` for a reference to a name assigned once; ``(None, code)`` else."""
    if isinstance(code, ArrayRef) and code.name in definitions:
        return code.name, definitions[code.name]
    return None, code


def _normaliser(factor: sp.Expr, definitions: dict):
    """``(s, axis, r)`` for a factor that is ``1/s`` broadcast along one axis: ``r[:, None]``
    with ``r = 1/s``, ``(1/s)[:, None]`` or ``1/s[:, None]`` (``r`` None where no name holds
    ``1/s``); None for anything else."""
    if isinstance(factor, sp.Pow) and factor.exp == -1 and isinstance(factor.base, NewAxes):
        inner, pattern = factor.base.args
        if isinstance(inner, ArrayRef):
            return inner.name, _inserted_axis(pattern), None
        return None
    if not isinstance(factor, NewAxes):
        return None
    inner, pattern = factor.args
    r, code = _named(inner, definitions)
    if isinstance(code, sp.Pow) and code.exp == -1 and isinstance(code.base, ArrayRef):
        return code.base.name, _inserted_axis(pattern), r
    return None


def _shift(code: sp.Expr, axis: int, ndim: int, extents) -> tuple[sp.Expr, sp.Expr]:
    """``code`` (of ``ndim`` axes) as ``(u, c)`` with ``code = u + c``, ``c`` the terms
    constant along ``axis`` (their extent, right-aligned as broadcasting aligns it, is 1 there)
    and ``u`` the rest; ``c`` is 0 where there is none."""
    terms = sp.Add.make_args(code)
    constant = []
    for term in terms:
        extent = extents(term)
        if extent is not None and len(extent) <= ndim and \
                ((1,) * (ndim - len(extent)) + tuple(extent))[axis] == 1:
            constant.append(term)
    return sp.Add(*[t for t in terms if t not in constant]), sp.Add(*constant)


def _is_row_max(shift: sp.Expr, u: sp.Expr, axis: int, definitions: dict) -> bool:
    """Whether ``shift`` is minus the maximum of ``u`` along ``axis``, broadcast back."""
    negated = -shift
    if not isinstance(negated, NewAxes) or _inserted_axis(negated.args[1]) != axis:
        return False
    _, code = _named(negated.args[0], definitions)
    return type(code).__name__ in ("MaxAxis", "MaxValues") and code.args[0] == u \
        and int(code.args[1]) == axis


def softmax(statements: list[ArrayStatement], extents) -> list[ArrayStatement]:
    """Every ``p = e*r[:, None]`` that is a softmax (see the module docstring) as ``p =
    Softmax(u, axis)``, and the normaliser ``r = 1/s`` read back as ``p``'s maximum where the
    shift is the row maximum. The statements ``p`` no longer reads stay (a later pass drops what
    nothing reads). Side conditions, checked: ``s`` sums ``e`` along exactly the axis ``r`` is
    broadcast along; the shift's extent is 1 along it; ``u`` has the full extent of ``e``."""
    definitions = _definitions(statements)
    assigned = {s.name for s in statements}
    program = extents.programs[0]
    result = list(statements)
    for s in statements:
        if s.accumulate or s.name not in definitions or not isinstance(s.code, sp.Mul) \
                or len(s.code.args) != 2:
            continue
        for e_ref, factor in (s.code.args, s.code.args[::-1]):
            e, e_code = _named(e_ref, definitions)
            found = _normaliser(factor, definitions)
            if e is None or found is None or not isinstance(e_code, sp.exp):
                continue
            total, axis, r = found
            summed = definitions.get(total)
            extent = extents(e_ref)
            if axis is None or extent is None or not isinstance(summed, SumAxes) \
                    or summed.args[0] != e_ref or tuple(int(a) for a in summed.args[1]) != (axis,):
                continue
            _, exponent = _named(e_code.args[0], definitions)
            u, shift = _shift(exponent, axis, len(extent), extents)
            reads = {a.name for a in u.atoms(ArrayRef)}
            # read where p is, u must hold what it held where e was: names assigned once (or
            # never); and floats, as the kernel takes no integer array
            if extents(u) != extent or reads & assigned - set(definitions) \
                    or any(program.integer(name) for name in reads):
                continue
            result = [ArrayStatement(s.name, Softmax(u, axis)) if st.name == s.name else st
                      for st in result]
            if r is not None and _is_row_max(shift, u, axis, definitions):
                read_back = ArrayStatement(r, MaxValues(ArrayRef(s.name), axis))
                result = _read_back(result, r, read_back, s.name)
            break
    return result


def _read_back(statements: list[ArrayStatement], name: str, new: ArrayStatement,
               after: str) -> list[ArrayStatement]:
    """``statements`` with ``name``'s statement replaced by ``new`` placed right after the
    statement of ``after``; unchanged where a statement in between reads ``name`` (it would read
    it before it is computed)."""
    names = [s.name for s in statements]
    old, anchor = names.index(name), names.index(after)
    between = statements[old + 1:anchor]
    if any(ArrayRef(name) in s.code.atoms(ArrayRef) for s in between):
        return statements
    rest = [s for s in statements if s.name != name]
    anchor = [s.name for s in rest].index(after)
    return rest[:anchor + 1] + [new] + rest[anchor + 1:]


def _row_max_of(code: sp.Expr, u: sp.Expr, definitions: dict) -> bool:
    """Whether ``code`` names the maximum of ``u`` along axis 1."""
    _, value = _named(code, definitions)
    return isinstance(value, (MaxAxis, MaxValues)) and value.args[0] == u \
        and int(value.args[1]) == 1


def log_softmax_at(statements: list[ArrayStatement], extents) -> list[ArrayStatement]:
    """Every sum holding ``u[arange(n), Y] - m + log(r)`` with ``p = Softmax(u, 1)``, ``r =
    MaxValues(p, 1)`` and ``m`` the maximum of ``u`` along axis 1 (each a name assigned once)
    has those three terms replaced by ``LogSoftmaxAt(p, u, Y)`` (see the module docstring).
    Side conditions, checked: ``u`` has two axes, the rows read are all of them, in order, and
    the labels are an array with one entry per row."""
    definitions = _definitions(statements)

    def parts(term):
        """``(u, labels)`` of a label read ``u[arange(n), Y]`` over all rows of a matrix."""
        if not isinstance(term, Take) or len(term.args) != 3 or \
                not isinstance(term.args[1], Arange):
            return None
        u, rows, labels = term.args
        extent = extents(u)
        if extent is None or len(extent) != 2 or extent[0] != rows.args[0] \
                or not isinstance(labels, ArrayRef) or extents(labels) != (extent[0],):
            return None  # one label per row, read from an array of them
        return u, labels

    def rewrite(total: sp.Add) -> sp.Expr:
        terms = list(total.args)
        for read in terms:
            found = parts(read)
            if found is None:
                continue
            u, labels = found
            for log in terms:
                if not isinstance(log, sp.log):
                    continue
                _, r_code = _named(log.args[0], definitions)
                if not isinstance(r_code, MaxValues) or int(r_code.args[1]) != 1:
                    continue
                p, p_code = _named(r_code.args[0], definitions)
                if p is None or p_code != Softmax(u, 1):
                    continue
                for shift in terms:
                    if shift.could_extract_minus_sign() and _row_max_of(-shift, u, definitions):
                        rest = list(terms)
                        for used in (read, log, shift):
                            rest.remove(used)
                        return sp.Add(*rest, LogSoftmaxAt(ArrayRef(p), u, labels))
        return total

    return [ArrayStatement(s.name, s.code.replace(lambda e: isinstance(e, sp.Add), rewrite),
                           s.accumulate) for s in statements]


class LogSoftmax(ArrayOp):
    """``LogSoftmax(u, 1)`` -> ``torch.log_softmax(u, 1)``: ``u - log(exp(u).sum(1))`` in one
    fused pass per row."""


class SoftmaxAdjoint(ArrayOp):
    """``SoftmaxAdjoint(g, p, 1)`` -> ``torch._softmax_backward_data(g, p, 1, dtype)``: ATen's
    kernel for ``p*(g - (g*p).sum(1, keepdim=True))``, which it computes for any two arrays of
    one shape, in one fused pass per row."""


class LogSoftmaxAdjoint(ArrayOp):
    """``LogSoftmaxAdjoint(g, y, 1)`` -> ``torch._log_softmax_backward_data(g, y, 1, dtype)``:
    ATen's kernel for ``g - exp(y)*g.sum(1, keepdim=True)``, computed for any two arrays of one
    shape, in one fused pass per row."""


def _summed_back(code: sp.Expr, extents) -> tuple[sp.Expr, int] | None:
    """``(x, axis)`` for ``code`` that is ``x`` summed along one axis and broadcast back along it
    (``x.sum(1)[:, None]``): its extent is ``x``'s with 1 at that axis, so each sum meets the
    row it was taken over. None for anything else."""
    inner = code.args[0] if isinstance(code, NewAxes) else code
    if not isinstance(inner, SumAxes) or len(inner.args[1]) != 1:
        return None
    x, axis = inner.args[0], int(inner.args[1][0])
    full = extents(x)
    return (x, axis) if full is not None and _summed_back_extent(code, full, axis, extents) \
        else None


def _negated(term: sp.Expr) -> sp.Expr | None:
    """``t`` for a term ``-t``, else None."""
    return -term if term.could_extract_minus_sign() else None


def softmax_adjoints(statements: list[ArrayStatement], extents) -> list[ArrayStatement]:
    """Every backward statement that is exactly ``p*(g - (g*p).sum(a)[..])`` as
    ``SoftmaxAdjoint(g, p, a)`` and ``g - exp(y)*g.sum(a)[..]`` as ``LogSoftmaxAdjoint(g, y, a)``
    (attention's ``dA``, log_softmax's ``dz``): ATen's kernels compute exactly these
    expressions, for any values, so the only side conditions are the forms' own, checked: ``g``,
    ``p`` (``exp(y)``) of one full extent, the sum along one axis and broadcast back along it."""
    result = []
    for s in statements:
        code = s.code
        found = None if s.accumulate else _softmax_adjoint(code, extents) or \
            _log_softmax_adjoint(code, extents)
        result.append(ArrayStatement(s.name, found, s.accumulate) if found is not None else s)
    return result


def _softmax_adjoint(code: sp.Expr, extents) -> sp.Expr | None:
    if not isinstance(code, sp.Mul) or len(code.args) != 2:
        return None
    for p, rest in (code.args, code.args[::-1]):
        if not isinstance(rest, sp.Add) or len(rest.args) != 2:
            continue
        for g, term in (rest.args, rest.args[::-1]):
            back = _negated(term)
            summed = back is not None and _summed_back(back, extents)
            if not summed or extents(g) is None or extents(g) != extents(p) or \
                    extents(summed[0]) != extents(g):
                continue
            if sp.expand(summed[0] - g * p) == 0:
                return SoftmaxAdjoint(g, p, summed[1])
    return None


def _log_softmax_adjoint(code: sp.Expr, extents) -> sp.Expr | None:
    if not isinstance(code, sp.Add) or len(code.args) != 2:
        return None
    for g, term in (code.args, code.args[::-1]):
        product = _negated(term)
        if not isinstance(product, sp.Mul) or len(product.args) != 2:
            continue
        for back, e in (product.args, product.args[::-1]):
            summed = _summed_back(back, extents)
            if not summed or not isinstance(e, sp.exp) or summed[0] != g or \
                    extents(g) is None or extents(e) != extents(g):
                continue
            return LogSoftmaxAdjoint(g, e.args[0], summed[1])
    return None


def log_softmax(statements: list[ArrayStatement], extents) -> list[ArrayStatement]:
    """Every ``y = u + c - log(s)[..]`` with ``s = exp(u + c).sum(a)`` and ``c`` constant along
    ``a`` (the row maximum, or any shift) as ``y = LogSoftmax(u, a)``: a constant along the axis
    cancels, ``u + c - log(sum exp(u + c)) == u - log(sum exp(u))``, and the kernel shifts by
    the row maximum itself. Side conditions, checked: ``s`` sums exactly that exponential along
    ``a``, the log is broadcast back along ``a``, ``u`` has the full extent."""
    definitions = _definitions(statements)
    result = list(statements)
    for s in statements:
        if s.accumulate or s.name not in definitions or not isinstance(s.code, sp.Add):
            continue
        for term in s.code.args:
            back = _negated(term)
            inner = back.args[0] if isinstance(back, NewAxes) else back
            if not isinstance(inner, sp.log):
                continue
            total, summed = _named(inner.args[0], definitions)
            if total is None or not isinstance(summed, SumAxes) or len(summed.args[1]) != 1 \
                    or not isinstance(summed.args[0], sp.exp):
                continue
            axis, extent = int(summed.args[1][0]), extents(summed.args[0])
            if extent is None or not _summed_back_extent(back, extent, axis, extents):
                continue
            exponent = summed.args[0].args[0]
            u, shift = _shift(exponent, axis, len(extent), extents)
            rest = sp.Add(*[t for t in s.code.args if t is not term])
            if extents(u) != extent or sp.expand(rest - exponent) != 0:
                continue
            result = [ArrayStatement(st.name, LogSoftmax(u, axis)) if st.name == s.name else st
                      for st in result]
            break
    return result


def _summed_back_extent(code, full: tuple, axis: int, extents) -> bool:
    """Whether ``code`` has ``full``'s extent with 1 at ``axis``."""
    back = extents(code)
    if back is None or len(back) > len(full):
        return False
    back = (sp.S.One,) * (len(full) - len(back)) + tuple(back)
    return all(b == (1 if k == axis else f) for k, (f, b) in enumerate(zip(full, back)))


def specialized(statements: list[ArrayStatement], extents) -> list[ArrayStatement]:
    """The forward ``statements`` with every fused-kernel rewrite of this module applied."""
    return log_softmax(log_softmax_at(softmax(statements, extents), extents), extents)


class _Nonlinear(Exception):
    """Code not linear in the adjoints in a way ``seeded`` can follow: no seed is folded."""


# array operations linear in their first argument (the others are shapes, axes or indices)
_LINEAR_FIRST = (SumAxes, NewAxes, Transpose, Reshape, BroadcastTo, Sliced, Pad, Take, Windows)


def _seed(code: sp.Expr, adjoints: set[str], seed: sp.Symbol) -> sp.Expr:
    """``code``, linear in the ``adjoints`` plus terms proportional to the seed (which was 1),
    with ``seed`` multiplied into exactly those terms."""
    if code == 0 or isinstance(code, Zeros):
        return code
    if isinstance(code, sp.Add):
        return sp.Add(*[_seed(t, adjoints, seed) for t in code.args])
    linear = [k for k, a in enumerate(code.args)
              if {r.name for r in a.atoms(ArrayRef)} & adjoints]
    # statements that a product cannot wrap: the seed goes inside, onto their linear parts
    if isinstance(code, (ScatterAdd, FlatScatterAdd, AxisScatterAdd)) and not set(linear) - {2}:
        shape, index, values, *axis = code.args
        return code.func(shape, index, _seed(values, adjoints, seed), *axis)
    if isinstance(code, AddAt) and 1 not in linear:  # base + value at the labels: both linear
        base, index, value = code.args
        return AddAt(_seed(base, adjoints, seed), index, _seed(value, adjoints, seed))
    if not {r.name for r in code.atoms(ArrayRef)} & adjoints:
        return seed * code
    if isinstance(code, ArrayRef):
        return code
    if isinstance(code, sp.Mul) and len(linear) == 1:
        args = list(code.args)
        args[linear[0]] = _seed(args[linear[0]], adjoints, seed)
        return sp.Mul(*args)
    if isinstance(code, _LINEAR_FIRST) and linear == [0]:
        return code.func(_seed(code.args[0], adjoints, seed), *code.args[1:])
    if isinstance(code, Piecewise) and not any(
            {r.name for r in condition.atoms(ArrayRef)} & adjoints for _, condition in code.args):
        # a branch chosen by conditions that read no adjoint: linear in each branch's value
        return Piecewise(*[ExprCondPair(_seed(value, adjoints, seed), condition)
                           for value, condition in code.args], evaluate=False)
    if isinstance(code, (MatMul, Einsum, Conv)) and len(linear) == 1:
        args = list(code.args)
        args[linear[0]] = _seed(args[linear[0]], adjoints, seed)
        return code.func(*args)
    raise _Nonlinear(type(code).__name__)


def seeded(statements: list[ArrayStatement], forward_names, seed: sp.Symbol
           ) -> list[ArrayStatement] | None:
    """A loss's backward ``statements`` (derived with the loss's adjoint set to 1) taking that
    adjoint as ``seed``: a term of an adjoint that reads no other adjoint is proportional to the
    seed, so it is multiplied by it; every other value follows by linearity. Names that are not
    adjoints (recomputed forward values) and read none are left alone. None where some code is
    not linear in the adjoints in a way followed here (the caller then scales the gradients)."""
    adjoint_names = {"d" + name for name in forward_names}
    adjoints: set[str] = set()
    for s in statements:  # a temporary that reads an adjoint is linear in the seed too
        reads = {r.name for r in s.code.atoms(ArrayRef)}
        if s.name in adjoint_names or reads & adjoints:
            adjoints.add(s.name)
    try:
        return [ArrayStatement(s.name, _seed(s.code, adjoints, seed), s.accumulate)
                if s.name in adjoints else s for s in statements]
    except _Nonlinear:
        return None


__all__ = ["LogSoftmax", "LogSoftmaxAdjoint", "LogSoftmaxAt", "Softmax", "SoftmaxAdjoint",
           "log_softmax", "log_softmax_at", "seeded", "softmax", "softmax_adjoints", "specialized"]
