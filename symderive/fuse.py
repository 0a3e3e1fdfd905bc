"""Fusion: lowered statements rewritten so that each costs the fewest full-size passes, as an expert
writes them by hand. Two general rewrites over elementwise array code, both decided by the extent
(the shape, right-aligned for broadcasting) of every operand: scalar and row factors of a product
are multiplied together before they meet a full-size array (``x*(g/(n - 1))``, not ``x*g/(n - 1)``,
which makes two full-size passes), and a statement whose value is a sum of full-size terms, or
such a sum times small factors, becomes one fresh temporary updated in place (``InPlace``: a
``torch.addcmul`` start, then ``add_``/``sub_``/``addcmul_``/``mul_``, or NumPy's ``+=``/``*=``), so
no term allocates an array of its own; for torch, a small factor of the whole sum is distributed
over its terms (named once), so ``addcmul`` starts from the sum's small term and no pass scales
the result. Only a temporary the statement itself just made is ever updated in place, so no other
name, view or saved value can change. Sums over leading axes (column sums) print in torch as the
emitted helper ``leading_sums``, which streams through a large array as accurately as ``.sum``.
A reduction that two places compute alike is computed once, under a name (``shared_reductions``).
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from .ir import Program
from .lower import (
    Arange,
    ArrayOp,
    ArrayRef,
    ArrayStatement,
    BroadcastTo,
    Equal,
    Eye,
    Full,
    MatMul,
    MaxAxis,
    NewAxes,
    OneHot,
    SumAxes,
    Transpose,
    Zeros,
    holds_array,
)
from .ops import ArgMax
from .validate import emitted_names


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


# The helper ``LeadingSums`` prints as, emitted into a torch module that calls it. Both paths add
# 16 rows at a time in one streaming pass and then the 16-row partial sums (as accurate as
# ``.sum``'s cascade): eagerly 16 interleaved blocks of rows through a BLAS matrix-vector product;
# under ``torch.compile``, 16 consecutive rows at a time, a reduction that inductor fuses with the
# producer of ``x`` and walks a few pages at a time, where ``x.sum(0)`` becomes one loop down each
# column at the row stride (about 1.8x ATen's fused batchnorm backward at 4096x1024, 1 thread).
# The columns stay an axis of their own, so code compiled for symbolic shapes indexes without a
# modulo (shape-generic code with one ran about 6x slower).
LEADING_SUMS = '''def leading_sums(x, axes=1):
    """``x`` summed over its first ``axes`` axes (``x.sum(0)`` for one). A large contiguous ``x``
    is added 16 rows at a time in one streaming pass, then those sums by ``.sum``: as accurate
    as ``.sum``, which walks each column at the row stride, and faster."""
    if x.numel() < 1 << 20:  # small: the call's own cost is the time, so one plain call
        return x.sum(0) if axes == 1 else x.sum(tuple(range(axes)))
    rows = x.shape[:axes].numel()
    blocks = rows // 16
    if blocks < 2 or not x.is_contiguous() or x.dtype not in (torch.float32, torch.float64):
        return x.sum(tuple(range(axes)))  # .sum adds half floats in float32; a matmul need not
    flat = x.reshape(rows, x.numel() // rows)
    columns = flat.shape[1]
    if torch.compiler.is_compiling():  # 16 consecutive rows: a fused reduction
        partial = flat[:16 * blocks].view(blocks, 16, columns).sum(1)
    else:  # 16 interleaved blocks of rows: one matrix-vector product
        head = flat[:16 * blocks].view(16, blocks * columns)
        partial = (x.new_ones(16) @ head).view(blocks, columns)
    total = partial.sum(0)
    if 16 * blocks < rows:
        total = total + flat[16 * blocks:].sum(0)
    return total.view(x.shape[axes:])'''


# The helper a column sum of a product prints as (``LeadingSums`` of a ``SumOfProduct``). The
# product of two large arrays, made whole and then summed, is written once and read again: two of
# the four full-size passes of ``leading_sums(a*b)``. Instead the products of each block of rows
# are added into one block-sized accumulator (``addcmul_``) that stays in cache, so only ``a`` and
# ``b`` are read from memory, and the accumulator is then summed as ``leading_sums`` sums (16
# interleaved rows through a matrix-vector product, then ``.sum``). Each accumulator element adds
# at most 64 products in sequence (the block grows for taller arrays), so the result is as
# accurate as ``(a*b).sum``. The loop is over blocks of about 512 KiB, never over elements. Under
# ``torch.compile``, for arrays under 2 MiB (the caches hold them whole: the blocks only add
# calls), for non-contiguous ones and where autograd must see the product, it is
# ``leading_sums(a*b)``.
LEADING_DOT = '''def leading_dot(a, b, axes=1):
    """``(a*b)`` summed over its first ``axes`` axes, for ``a`` and ``b`` of one shape, without
    making the full-size product: each block of rows is multiplied and added into one block-sized
    accumulator that stays in cache, which is then summed as ``leading_sums`` sums."""
    if torch.compiler.is_compiling() or a.shape != b.shape \\
            or a.numel() * a.element_size() < 1 << 21 \\
            or a.dtype not in (torch.float32, torch.float64) or b.dtype != a.dtype \\
            or not (a.is_contiguous() and b.is_contiguous()) \\
            or torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return leading_sums(a * b, axes)
    rows = a.shape[:axes].numel()
    columns = a.numel() // rows
    step = max(16, (1 << 19) // (16 * columns * a.element_size()) * 16, -(-rows // 1024) * 16)
    if rows < 2 * step:
        return leading_sums(a * b, axes)
    flat_a, flat_b = a.reshape(rows, columns), b.reshape(rows, columns)
    blocks = rows // step
    accumulator = flat_a[:step] * flat_b[:step]
    for block in range(1, blocks):
        chosen = slice(block * step, (block + 1) * step)
        accumulator.addcmul_(flat_a[chosen], flat_b[chosen])
    partial = a.new_ones(16) @ accumulator.view(16, step // 16 * columns)
    total = partial.view(step // 16, columns).sum(0)
    if blocks * step < rows:
        total = total + (flat_a[blocks * step:] * flat_b[blocks * step:]).sum(0)
    return total.view(a.shape[axes:])'''


def helpers(text: str, target: str) -> list[str]:
    """The source of the helpers that the emitted module ``text`` calls."""
    from .printing.arrays import QUOTIENT
    from .specialize import LOG_SOFTMAX_AT

    ieee = [QUOTIENT] * ("quotient(" in text)
    if target != "torch":
        return ieee
    dot = "leading_dot(" in text
    return ieee + [LEADING_SUMS] * (dot or "leading_sums(" in text) + [LEADING_DOT] * dot \
        + [LOG_SOFTMAX_AT] * ("log_softmax_at(" in text)


class InPlace(ArrayOp):
    """``InPlace(start, ((kind, operand...), ...))``: a fresh array ``start`` updated in place by
    each step in turn: ``("add", t)`` adds ``t``, ``("mul", s)`` multiplies by ``s`` and
    ``("addcmul", x, s)`` adds ``x*s``."""


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
        if isinstance(code, Arange):
            return (code.args[0],)
        if isinstance(code, Eye):
            return (code.args[0], code.args[-1])
        if isinstance(code, Equal):
            return _broadcast([self(a) for a in code.args])
        if isinstance(code, OneHot):
            labels = self(code.args[0])
            return None if labels is None else labels + (code.args[1],)
        return None


def _rank(extent: Extent | None) -> int | None:
    """How many axes of an extent have a size other than 1 (None: unknown, so large)."""
    return None if extent is None else len([s for s in extent if s != 1])


def _split(factors, rank: int, extents: Extents) -> tuple[list, list]:
    """Factors of a product as (full: of the product's rank or unknown, small: the rest)."""
    full, small = [], []
    for f in factors:
        r = _rank(extents(f))
        (full if r is None or r >= rank else small).append(f)
    return full, small


def folded(code: sp.Expr, extents: Extents) -> sp.Expr:
    """``code`` with the small factors of every product grouped, so they meet each other before
    a larger array: ``-bnraw*dbngain/(n - 1)`` -> ``bnraw*Grouped(-dbngain/(n - 1))``.

    Grouping only reassociates an elementwise product, which broadcasting keeps exact in shape
    and value up to rounding; no factor is dropped or added."""
    if not isinstance(code, sp.Basic) or not code.args or not holds_array(code):
        return code
    if isinstance(code, (sp.Add, sp.Mul, sp.Pow, sp.Function, sp.Max, sp.Min)):
        args = [folded(a, extents) for a in code.args]
        if isinstance(code, sp.Mul):
            return _grouped_product(args, extents)
        if isinstance(code, (sp.Function, sp.Max, sp.Min)) and not isinstance(code, sp.Pow):
            return code.func(*args, evaluate=False) if not isinstance(code, ArrayOp) else \
                code.func(*args)
        return code.func(*args)
    return code


def summed_products(code: sp.Expr, extents: Extents) -> sp.Expr:
    """Every ``SumAxes`` of a product of two same-extent arrays over axes other than the last
    as ``SumOfProduct`` (the last axis is left to ``.sum``, whose pairwise summation is more
    accurate than einsum's running sum along it)."""
    def rewrite(node):
        x, axes, ndim = node.args
        factors = sp.Mul.make_args(x)
        if len(factors) != 2 or int(ndim) - 1 in {int(a) for a in axes}:
            return node
        a, b = factors
        extent = extents(a)
        if extent is None or len(extent) != int(ndim) or extents(b) != extent \
                or 1 in extent:
            return node
        return SumOfProduct(a, b, axes, ndim)
    return code.replace(lambda e: isinstance(e, SumAxes), rewrite)


def leading_sums(code: sp.Expr) -> sp.Expr:
    """Every sum over the leading axes of an array that keeps at least one axis (a column sum)
    wrapped in ``LeadingSums``, the spelling that streams through the array."""
    def leading(node) -> bool:
        axes, ndim = node.args[-2], int(node.args[-1])
        return 0 < len(axes) < ndim and sorted(int(a) for a in axes) == list(range(len(axes)))

    return code.replace(lambda e: isinstance(e, (SumAxes, SumOfProduct)) and leading(e),
                        lambda e: LeadingSums(e))


def _grouped_product(factors: list, extents: Extents) -> sp.Expr:
    rank = _rank(extents(sp.Mul(*factors)))
    if rank is None or rank == 0:
        return sp.Mul(*factors)
    full, small = _split(factors, rank, extents)
    number = sp.Mul(*[f for f in small if f.is_Number])
    if not full or len(small) < 2 and not (small and number != 1 and number != -1):
        return sp.Mul(*factors)
    if len(small) == 1 and number == -1:  # -x: one pass, nothing to group
        return sp.Mul(*factors)
    return sp.Mul(*full) * Grouped(scalars_grouped(small))


def scalars_grouped(factors) -> sp.Expr:
    """The product of ``factors`` with its Python scalars (numbers, sizes, constants) multiplied
    first: ``g*(-1/(n - 1))`` is one pass over ``g`` where ``-g/(n - 1)`` is two."""
    scalars = [f for f in factors if not holds_array(f)]
    arrays = [f for f in factors if holds_array(f)]
    if len(scalars) < 2 or not arrays:
        return sp.Mul(*factors)
    return sp.Mul(*arrays) * Grouped(sp.Mul(*scalars))


def _term_parts(term: sp.Expr, rank: int, extents: Extents):
    """A full-size term as (array, small factor): ``x*s`` with one full factor ``x``; None for
    any other term."""
    factors = sp.Mul.make_args(_ungrouped(term))
    full, small = _split(factors, rank, extents)
    if len(full) != 1 or isinstance(full[0], sp.Add) or not small:
        return None
    return full[0], sp.Mul(*small)


def _fresh(code: sp.Expr) -> bool:
    """Whether evaluating ``code`` makes a new array that autograd keeps no reference to: a sum
    or product, not a name or a view of one (a transpose, slice, reshape or read-only
    broadcast), nor a function such as ``exp`` whose derivative reads its own output."""
    return isinstance(code, (sp.Add, sp.Mul))


def _ungrouped(code: sp.Expr) -> sp.Expr:
    """``code`` without ``Grouped`` marks (an in-place step groups its operands itself)."""
    while code.has(Grouped):
        code = code.xreplace({g: g.args[0] for g in code.atoms(Grouped)})
    return code


def in_place(code: sp.Expr, extents: Extents) -> sp.Expr | None:
    """An ``InPlace`` computing ``code`` with one fresh full-size array, or None where that
    saves nothing (a single term, an unknown extent) or cannot be done safely.

    ``g*r*(dout - x*a/(n - 1) - b/n)`` (``g, r, a, b`` rows) becomes ``t = addcmul(dout, x,
    -a/(n - 1)); t -= b/n; t *= g*r``: three full-size writes where the plain expression makes
    five and allocates each."""
    return _in_place(code, extents, None, False)[0]


def _in_place(code: sp.Expr, extents: Extents, scale_name: str | None, distribute: bool) -> tuple:
    """``(InPlace or None, hoisted)``. Where ``distribute``, a small factor of the whole sum is
    distributed over its terms (``_distributed``); one that is not a single name is read as
    ``ArrayRef(scale_name)``, and ``hoisted`` is its value (computed once, by a statement of its
    own), else None."""
    extent = extents(code)
    rank = _rank(extent)
    if not rank:
        return None, None
    steps: list[tuple] = []
    body, hoisted = code, None
    if isinstance(code, sp.Mul):
        full, small = _split(sp.Mul.make_args(_ungrouped(code)), rank, extents)
        if len(full) == 1 and isinstance(full[0], sp.Add) and small:
            body, outer = full[0], sp.Mul(*small)
    if not isinstance(body, sp.Add):
        return None, None
    terms = list(body.args)
    if any(extents(t) is None for t in terms):
        return None, None
    if body is not code and distribute:
        single = isinstance(outer, (ArrayRef, sp.Symbol)) or not holds_array(outer)
        factor = outer if single or scale_name is None else ArrayRef(scale_name)
        if factor is not outer:
            extents.known[scale_name] = extents(outer)
        spread = _distributed(terms, factor, rank, extents) if single or scale_name else None
        if spread is not None:  # the factor went into the terms: no pass of its own
            terms, body, hoisted = spread, code, None if single else outer
    whole = [t for t in terms if extents(t) == extent]
    if not whole:
        return None, None
    products = {t: _term_parts(t, rank, extents) for t in whole}
    plain = [t for t in whole if products[t] is None]
    multiplied = [t for t in whole if products[t] is not None]
    smalls = [t for t in terms if _rank(extents(t)) < rank and holds_array(t)]
    if body is code and smalls and multiplied and not plain:
        # torch.addcmul broadcasts the small term it starts from: one write, no pass to add it
        start = AddCMul(folded(smalls[0], extents), *products[multiplied[0]])
        used = smalls[:1] + multiplied[:1]
    elif plain and multiplied:
        start, used = AddCMul(plain[0], *products[multiplied[0]]), plain[:1] + multiplied[:1]
    elif len(plain) > 1:
        start, used = plain[0] + plain[1], plain[:2]
    elif multiplied:  # x*s makes a fresh array that the other terms update
        x, small = products[multiplied[0]]
        start, used = x * (Grouped(small) if isinstance(small, sp.Mul) else small), multiplied[:1]
    elif body is not code and _fresh(plain[0]):
        start, used = plain[0], plain[:1]  # computed here, so a fresh array, then scaled
    else:
        return None, None
    rest = [t for t in terms if t not in used]
    for term in rest:
        if _rank(extents(term)) < rank:  # a small term is added whole: its grouping is moot
            term = _ungrouped(term)
        parts = products.get(term) or (_term_parts(term, rank, extents)
                                       if extents(term) == extent else None)
        steps.append(("addcmul", *parts) if parts else ("add", term))
    if body is not code:
        steps.append(("mul", outer))
    if not steps:
        return None, None
    return InPlace(start, sp.Tuple(*[sp.Tuple(sp.Symbol(kind), *args) for kind, *args in steps])
                   ), hoisted


def _distributed(terms: list, outer: sp.Expr, rank: int, extents: Extents) -> list | None:
    """``(x - y*a - b)*s`` (``a, b, s`` small) as the terms ``x*s - y*(a*s) - b*s``, or None
    where that saves nothing. Distributing pays where the sum has a small term ``b``: the fresh
    array then starts as ``addcmul(-b*s, x, s)`` (one write where ``x - b`` and ``*= s`` make
    two read-write passes) and every other full-size term is one ``addcmul_``. Each term is
    scaled before the terms meet, so no cancellation is added: every term is rounded once more,
    as the product of the sum is. Every scaled factor must stay small (a row factor of a term
    times a column ``s`` would be full-size)."""
    whole = [t for t in terms if _rank(extents(t)) == rank]
    small = [t for t in terms if _rank(extents(t)) < rank]
    if not whole or not any(holds_array(t * outer) for t in small):
        return None  # no small term (a tensor, for torch.addcmul) to fold into the start
    scaled = []
    for term in terms:
        parts = _term_parts(term, rank, extents) if term in whole else None
        arrays = _split(sp.Mul.make_args(_ungrouped(term)), rank, extents)[0]
        if term in whole and parts is None and (len(arrays) != 1 or isinstance(arrays[0], sp.Add)):
            return None  # a term that is not one array times small factors: keep the sum
        factor = parts[1] * outer if parts else outer if term in whole else term * outer
        if _rank(extents(factor)) is None or _rank(extents(factor)) >= rank:
            return None  # a row times a column is full-size: scaling would add a pass
        scaled.append(parts[0] * factor if parts else term * outer)
    return scaled


def one_call(code: sp.Expr, extents: Extents) -> sp.Expr:
    """A sum of two terms that one library call computes without a temporary: ``b1 + x @ W1``
    as ``AddMatMul`` (matrices only) and ``beta + gamma*xhat`` as ``AddCMul``; else ``code``."""
    if not isinstance(code, sp.Add) or len(code.args) != 2:
        return code
    extent = extents(code)
    rank = _rank(extent)
    if not rank:
        return code
    for term, other in (code.args, code.args[::-1]):
        if isinstance(term, MatMul) and all(
                len(extents(a) or ()) == 2 for a in term.args) and extents(other) is not None \
                and holds_array(other):  # torch.addmm and addcmul take tensors, not numbers
            return AddMatMul(other, *term.args)
    for term, other in (code.args, code.args[::-1]):
        parts = _term_parts(term, rank, extents) if extents(term) == extent else None
        if parts is not None and holds_array(parts[1]) and extents(other) is not None \
                and holds_array(other):
            return AddCMul(other, *parts)
    return code


def fused(statements: list[ArrayStatement], programs: tuple[Program, ...],
          update: bool = True, backward: Program | None = None,
          distribute: bool = False) -> list[ArrayStatement]:
    """``statements`` with small factors grouped and, where ``update``, sums of full-size
    terms computed in place in one fresh array (``in_place``); ``distribute`` (a target with a
    fused multiply-add that broadcasts its start, torch's ``addcmul``) also spreads a small factor
    of a whole sum over its terms, naming it first when it is compound. Accumulating statements
    are left as they are: the array they add to may be a view of another. Given the ``backward``
    of a forward whose gradients read no ``ArgMax``, maxima are computed without their indices.
    Sums over leading axes become ``LeadingSums``."""
    extents = Extents(programs)
    if backward is not None and not any(s.rhs.has(ArgMax) for s in backward.body):
        statements = [ArrayStatement(s.name, s.code.replace(
            lambda e: isinstance(e, MaxAxis), lambda e: MaxValues(*e.args)), s.accumulate)
            for s in statements]
    taken = {s.name for s in statements} | emitted_names(*programs)
    result = []
    for s in statements:
        code = summed_products(folded(s.code, extents), extents)
        # a statement reading its own name (an upstream adjoint added to) would read the new
        # array after the first line rebinds the name: computed as one expression instead
        if update and not s.accumulate and ArrayRef(s.name) not in code.atoms(ArrayRef):
            scale_name = _fresh_name(f"{s.name}_scale", taken)
            updated, hoisted = _in_place(code, extents, scale_name, distribute)
            if hoisted is not None:  # the shared small factor, computed once
                taken.add(scale_name)
                result.append(ArrayStatement(scale_name, folded(hoisted, extents)))
            code = updated or code
        code = leading_sums(one_call(code, extents))
        result.append(ArrayStatement(s.name, code, s.accumulate))
    return result


# The reductions worth computing once: each reads a whole array to make a smaller one.
_REDUCTIONS = (LeadingSums, SumAxes, SumOfProduct, MaxValues, MaxAxis)


def _reduction_uses(code: sp.Expr) -> list[sp.Expr]:
    """Every outermost reduction in ``code``, once per place it occurs."""
    if isinstance(code, _REDUCTIONS):
        return [code]
    return [use for arg in code.args for use in _reduction_uses(arg)]


def _reduction_name(reduction: sp.Expr) -> str:
    reads = sorted(x.name for x in reduction.atoms(ArrayRef))
    kind = "max" if isinstance(reduction, (MaxValues, MaxAxis)) else "sum"
    return "_".join([kind, *reads]) if reads and len(reads) <= 3 else f"shared_{kind}"


def shared_reductions(statements: list[ArrayStatement], taken: set[str]) -> list[ArrayStatement]:
    """``statements`` with each reduction that is computed in two places or more (the double
    backward's batchnorm statements held ``leading_dot(bnraw, grad_hpreact)`` four times)
    computed once, as a statement of its own named after what it reads, just before the first
    statement that uses it; the emitted guards then run it wherever any of its users runs.

    Side condition, checked: from the first use to the last, no statement assigns or adds into
    any array the reduction reads, and none adds into an array at all (an accumulated array may
    be a view of another), so every use would have computed the same value. Only outermost
    reductions are counted (one inside another is computed with it)."""
    result = list(statements)
    changed = True
    while changed:
        changed = False
        uses = [_reduction_uses(s.code) for s in result]
        counts: dict[sp.Expr, int] = {}
        for found in uses:
            for reduction in found:
                counts[reduction] = counts.get(reduction, 0) + 1
        for reduction, count in counts.items():
            if count < 2:
                continue
            users = [k for k, found in enumerate(uses) if reduction in found]
            first, last = users[0], users[-1]
            reads = {x.name for x in reduction.atoms(ArrayRef)}
            if any(s.accumulate or s.name in reads and k < last
                   for k, s in enumerate(result[first:last + 1], first)):
                continue
            name = _fresh_name(_reduction_name(reduction), taken)
            taken.add(name)
            named = [ArrayStatement(s.name, s.code.xreplace({reduction: ArrayRef(name)}),
                                    s.accumulate) if first <= k <= last else s
                     for k, s in enumerate(result)]
            result = named[:first] + [ArrayStatement(name, reduction)] + named[first:]
            changed = True
            break
    return result


def _fresh_name(wanted: str, taken: set[str]) -> str:
    """``wanted``, or it with a number added, that is not ``taken``."""
    name, k = wanted, 2
    while name in taken:
        name, k = f"{wanted}{k}", k + 1
    return name


__all__ = ["AddCMul", "AddMatMul", "Extents", "Grouped", "InPlace", "LEADING_DOT", "LEADING_SUMS", "LeadingSums", "MaxValues", "folded", "fused", "helpers", "in_place", "leading_sums", "one_call", "scalars_grouped", "shared_reductions", "summed_products"]
