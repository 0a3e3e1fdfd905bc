"""Fusion: lowered statements rewritten so that each costs the fewest full-size passes, as an expert
writes them by hand. Scalar and row factors of a product are multiplied together before they meet
a full-size array, and a statement whose value is a sum of full-size terms becomes one fresh
temporary updated in place (``torch.addcmul`` then ``add_``/``addcmul_``/``mul_``, NumPy's
``+=``/``*=``), so no term allocates an array of its own; only a temporary the statement itself
just made is ever updated. Column sums print as the emitted ``leading_sums``, and a reduction two
places compute alike is computed once, under a name (``shared_reductions``).
"""
from __future__ import annotations

from collections import Counter

import sympy as sp

from ..algebra.cost import operation_count

from ..program.ir import Program
from ..program.names import emitted_names
from ..program.ops import ArgMax, Piecewise
from .arrays import (
    AddCMul,
    AddMatMul,
    Arange,
    ArgMaxAxis,
    ArrayOp,
    ArrayRef,
    ArrayStatement,
    Grouped,
    InPlace,
    Item,
    LeadingSums,
    MatMul,
    MaxAxis,
    MaxValues,
    MaxWithIndices,
    SumAxes,
    SumOfProduct,
    holds_array,
)
from .extents import Extents, _rank


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
        start, used = one_call(plain[0] + plain[1], extents), plain[:2]
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
        if _matrix_product(term, extents) or _matrix_product(-term, extents):
            sign = 1 if isinstance(term, MatMul) else -1  # a product added by addmm_, no temporary
            steps.append(("addmm", *(term * sign).args, sp.Integer(sign)))
        else:
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


def _matrix_product(term: sp.Expr, extents: Extents) -> bool:
    """Whether ``term`` is a product of two matrices (what ``addmm`` takes)."""
    return isinstance(term, MatMul) and all(len(extents(a) or ()) == 2 for a in term.args)


def one_call(code: sp.Expr, extents: Extents) -> sp.Expr:
    """A sum that library calls compute without temporaries: ``b1 + x @ W1`` as ``AddMatMul``
    (matrices only), each further matrix product of the sum one more (``b + h @ U + x @ W`` is
    ``addmm(addmm(b, h, U), x, W)``, an LSTM gate's pre-activation), and ``beta + gamma*xhat``
    as ``AddCMul``; else ``code``."""
    if not isinstance(code, sp.Add):
        return code
    extent = extents(code)
    rank = _rank(extent)
    if not rank:
        return code
    products = [t for t in code.args if _matrix_product(t, extents)]
    others = sp.Add(*[t for t in code.args if t not in products])
    if products and rank == 2 and (len(products) > 1 or holds_array(others)) and \
            (others == 0 or extents(others) is not None and holds_array(others)):
        # torch.addmm and addcmul take tensors, not numbers
        result = others if others != 0 else products.pop(0)
        for product in products:
            result = AddMatMul(result, *product.args)
        return result
    if len(code.args) != 2:
        return code
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
            scale_name = fresh_name(f"{s.name}_scale", taken)
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


# functions of arrays as cheap as the pass that would read a saved value back: not worth saving
_CHEAP = (sp.Abs, sp.sign, sp.Heaviside, sp.Piecewise, Piecewise, sp.floor, sp.ceiling, sp.Min,
          sp.Max, sp.KroneckerDelta)


def _transcendental_uses(code: sp.Expr) -> list[sp.Expr]:
    """Every function of arrays in ``code`` that costs a transcendental evaluation per element
    (``tanh``, ``exp``, ``erf``, ...; not an array operation, not inside a reduction, which is
    named whole, not integer index arithmetic), once per place it occurs."""
    if isinstance(code, _REDUCTIONS) or not isinstance(code, sp.Basic) or \
            isinstance(code, (Arange, ArgMaxAxis)):
        return []
    found = [use for arg in code.args for use in _transcendental_uses(arg)]
    if _transcendental(code) and holds_array(code):
        found.append(code)
    return found


def _transcendental(code: sp.Expr) -> bool:
    """A function (not an array operation) that is not one of the ``_CHEAP`` ones."""
    return isinstance(code, sp.Function) and not isinstance(code, (ArrayOp, *_CHEAP))


def _reduction_name(reduction: sp.Expr) -> str:
    reads = sorted(x.name for x in reduction.atoms(ArrayRef))
    kind = "max" if isinstance(reduction, (MaxValues, MaxAxis)) else \
        "sum" if isinstance(reduction, _REDUCTIONS) else \
        type(reduction).__name__.lower() if _transcendental(reduction) and \
        type(reduction).__name__.isidentifier() else "common"
    return "_".join([kind, *reads]) if reads and len(reads) <= 3 else f"shared_{kind}"


def shared_reductions(statements: list[ArrayStatement], taken: set[str]) -> list[ArrayStatement]:
    """``statements`` with each reduction that is computed in two places or more (the double
    backward's batchnorm statements held ``leading_dot(bnraw, grad_hpreact)`` four times)
    computed once, as a statement of its own named after what it reads, just before the first
    statement that uses it; the emitted guards then run it wherever any of its users runs.
    Only outermost reductions are counted (one inside another is computed with it)."""
    return _shared(statements, taken, _reduction_uses, lambda found: found)


def _elementwise_uses(code: sp.Expr) -> list[sp.Expr]:
    """Every compound elementwise subexpression of ``code`` worth computing once when it recurs:
    a sum or a function of arrays of two operations or more (not a view, not inside a reduction,
    which ``shared_reductions`` names whole, not integer index arithmetic), once per place it
    occurs."""
    found: list[sp.Expr] = []

    def visit(node) -> bool:
        """Collect under ``node``; whether it holds index arithmetic (printers read it)."""
        if isinstance(node, _REDUCTIONS) or not isinstance(node, sp.Basic):
            return isinstance(node, sp.Basic) and node.has(Arange, ArgMaxAxis)
        indexing = isinstance(node, (Arange, ArgMaxAxis))
        for arg in node.args:
            indexing = visit(arg) or indexing
        if not indexing and isinstance(node, (sp.Add, sp.Function)) and \
                not isinstance(node, ArrayOp) and holds_array(node) and \
                operation_count(node) >= 2:
            found.append(node)
        return indexing

    visit(code)
    return found


def shared_subexpressions(statements: list[ArrayStatement], taken: set[str]
                          ) -> list[ArrayStatement]:
    """``statements`` with each compound elementwise subexpression that recurs (an LSTM's cell
    adjoint ``dcn + dhn*og*(1 - tanh(cn)**2)``, read by four gate adjoints) computed once, the
    largest first, as ``shared_reductions`` computes a reduction once, under the same side
    condition."""
    return _shared(statements, taken, _elementwise_uses,
                   lambda found: sorted(found, key=lambda e: -operation_count(e)))


def _shared(statements: list[ArrayStatement], taken: set[str], uses_of, order
            ) -> list[ArrayStatement]:
    """Name one recurring part of ``statements`` at a time (``uses_of`` lists a statement's
    candidates, ``order`` ranks those that recur, best first) until none is left. Each round
    costs one count over the statements' candidates (remembered per statement until it changes)
    and the side condition of the parts it tries, so a double backward of hundreds of
    statements names hundreds of parts in linear rounds, not a quadratic search.

    Side condition, checked: from the first use to the last, no statement assigns or adds into
    any array the part reads, and none adds into an array at all (an accumulated array may
    be a view of another), so every use would have computed the same value."""
    result = list(statements)
    known: dict[sp.Expr, list[sp.Expr]] = {}  # a statement's candidates, kept until it changes
    members: dict[sp.Expr, set[sp.Expr]] = {}  # the same as a set, to find a part's users
    refused: set[sp.Expr] = set()  # parts whose side condition failed (nothing they read changes)
    while True:
        uses = [known[s.code] if s.code in known else known.setdefault(s.code, uses_of(s.code))
                for s in result]
        sets = [members[s.code] if s.code in members else
                members.setdefault(s.code, set(found)) for s, found in zip(result, uses)]
        counts: dict[sp.Expr, int] = {}
        for found in uses:
            for part in found:
                counts[part] = counts.get(part, 0) + 1
        chosen = None
        for part in order([p for p, count in counts.items() if count > 1 and p not in refused]):
            users = [k for k, found in enumerate(sets) if part in found]
            first, last = users[0], users[-1]
            reads = {x.name for x in part.atoms(ArrayRef)}
            if any(s.accumulate or s.name in reads and k < last
                   for k, s in enumerate(result[first:last + 1], first)):
                refused.add(part)
                continue
            chosen = part, users
            break
        if chosen is None:
            return result
        part, users = chosen
        name = reserve_name(_reduction_name(part), taken)
        named = [ArrayStatement(s.name, s.code.xreplace({part: ArrayRef(name)}),
                                s.accumulate) if k in users else s
                 for k, s in enumerate(result)]
        result = named[:users[0]] + [ArrayStatement(name, part)] + named[users[0]:]


def _unchanged(code: sp.Expr, forward_counts: dict, backward: list[ArrayStatement]) -> bool:
    """Whether every array ``code`` reads is assigned at most once in the forward and never in
    the backward: the forward's value of ``code`` is then the backward's."""
    reads = {x.name for x in code.atoms(ArrayRef)}
    return not any(forward_counts.get(x, 0) > 1 for x in reads) and \
        not reads & {s.name for s in backward}


def saved_indices(forward: list[ArrayStatement], backward: list[ArrayStatement],
                  taken: set[str]) -> tuple[list, list, list[str]]:
    """Where the backward takes the argmax of exactly what a forward statement takes the maximum
    of (max pooling's adjoint goes to each window's argmax), the forward finds the maxima and
    their indices in one pass (``MaxWithIndices``, the first index at ties as ``argmax``) and the
    backward reads the indices saved, instead of searching every window again. Returns the two
    statement lists and the names of the saved index arrays. Side condition, checked: the
    maximum is a whole statement of a name assigned once, and every array it reads is assigned
    at most once in the forward and never in the backward, so both passes see the same values."""
    counts = Counter(s.name for s in forward)
    saved: list[str] = []
    result = []
    for s in forward:
        code = s.code
        wanted = ArgMaxAxis(*code.args) if isinstance(code, MaxAxis) else None
        if wanted is None or s.accumulate or counts[s.name] != 1 \
                or not _unchanged(code, counts, backward) \
                or not any(b.code.has(wanted) for b in backward):
            result.append(s)
            continue
        pair = reserve_name(f"{s.name}_max", taken)
        indices = reserve_name(f"{s.name}_argmax", taken)
        result += [ArrayStatement(pair, MaxWithIndices(*code.args)),
                   ArrayStatement(s.name, Item(ArrayRef(pair), 0)),
                   ArrayStatement(indices, Item(ArrayRef(pair), 1))]
        backward = [ArrayStatement(b.name, b.code.xreplace({wanted: ArrayRef(indices)}),
                                   b.accumulate) for b in backward]
        saved.append(indices)
    return result, backward, saved


def saved_reductions(forward: list[ArrayStatement], backward: list[ArrayStatement],
                     taken: set[str]) -> tuple[list, list, list[str]]:
    """Every reduction the backward computes that the forward computed already, over the same
    values (logsumexp's ``exp(z - m).sum(1)``, which its input adjoint divides by), is named in
    the forward where it is not yet a whole statement and read back in the backward: a vector
    saved instead of a full-size pass recomputed. So is every transcendental function of arrays
    that both compute (an LSTM's ``tanh(cn)``, inside ``hn = og*tanh(cn)`` and read twice by
    the backward; autograd's tanh saves its result too): an array saved instead of a pass of
    ``tanh`` per use. Returns the two statement lists and the names the backward now reads from
    the forward. Side condition, checked: as ``saved_indices``' (what the value reads is
    assigned at most once in the forward and never in the backward), and the forward statement
    holding it is of a name assigned once."""
    counts = Counter(s.name for s in forward)
    saved: list[str] = []
    for reduction in dict.fromkeys(use for b in backward for use in
                                   _reduction_uses(b.code) + _transcendental_uses(b.code)):
        if not _unchanged(reduction, counts, backward):
            continue
        at = next((k for k, s in enumerate(forward) if s.code.has(reduction)), None)
        if at is None or forward[at].accumulate or counts[forward[at].name] != 1:
            continue
        if forward[at].code == reduction:
            name = forward[at].name
        else:
            name = reserve_name(_reduction_name(reduction), taken)
            forward = forward[:at] + [ArrayStatement(name, reduction)] + [
                ArrayStatement(s.name, s.code.xreplace({reduction: ArrayRef(name)}), s.accumulate)
                for s in forward[at:]]
            counts[name] = 1
        backward = [ArrayStatement(b.name, b.code.xreplace({reduction: ArrayRef(name)}),
                                   b.accumulate) for b in backward]
        saved.append(name)
    return forward, backward, saved


def reserve_name(wanted: str, taken: set[str]) -> str:
    """``fresh_name(wanted, taken)``, added to ``taken``."""
    name = fresh_name(wanted, taken)
    taken.add(name)
    return name


def fresh_name(wanted: str, taken: set[str]) -> str:
    """``wanted``, or it with a number added, that is not ``taken``."""
    name, k = wanted, 2
    while name in taken:
        name, k = f"{wanted}{k}", k + 1
    return name


__all__ = ["AddCMul", "AddMatMul", "Extents", "Grouped", "InPlace", "LeadingSums", "MaxValues", "folded", "fresh_name", "fused", "in_place", "leading_sums", "one_call", "reserve_name", "saved_indices", "saved_reductions", "scalars_grouped", "shared_reductions", "shared_subexpressions", "summed_products"]
