"""What a form costs, remembered: ``operation_count`` is ``sympy.count_ops`` (its number, exactly)
computed once per distinct subtree, ``work`` is the floating-point work of a form evaluated as
array code at given sizes (what the choice of materialised adjoints minimises), and ``printed`` is
``str`` of an expression computed once per expression. The simplifier and ``gather`` cost and sort many forms that share most of their
subtrees (a Horner-like search rebuilds candidates from the same memoised parts), and SymPy's own
``count_ops`` and printer walk every subtree again each time. Both caches are dropped by SymPy's
``clear_cache()`` (see ``ir.remembered``).
"""
from __future__ import annotations

import sympy as sp
from sympy.core.function import _coeff_isneg
from sympy.core.operations import LatticeOp
from sympy.simplify.radsimp import fraction

from ..program.ir import Program, free_indices, idx_size, remembered


def operation_count(expr: sp.Expr) -> int:
    """``int(sympy.count_ops(expr))``, remembered per subtree.

    SymPy's count walks a work list: each node it takes adds some operations and pushes the nodes
    to count next, and what a node adds and pushes depends on that node alone. So the count of a
    node is its own operations plus the counts of what it pushes, the same number whatever shares
    the subtree, and it can be remembered. ``_node_count`` is that loop body, case for case, as
    SymPy 1.14 writes it (``tests/test_cost.py`` compares the two on every form the derivations
    pass through); anything but an expression goes to SymPy.

    >>> from sympy import symbols, sin
    >>> x, y = symbols("x y")
    >>> operation_count(sin(x) / y - x**2), int(sp.count_ops(sin(x) / y - x**2))
    (4, 4)
    """
    if not isinstance(expr, sp.Expr) or expr.is_Relational:
        return int(sp.count_ops(expr))
    try:
        return _node_count(expr)
    except RecursionError:  # a very deep tree: SymPy's loop needs no stack
        return int(sp.count_ops(expr))


@remembered(maxsize=1 << 17)
def _node_count(a: sp.Basic) -> int:
    ops, pushed = 0, []
    if a.is_Rational:
        if a is not sp.S.One:  # -1/3 = NEG + DIV
            return int(a.p < 0) + int(a.q != 1)
    elif a.is_Mul or a.is_MatMul:
        if _coeff_isneg(a):
            ops += 1  # NEG
            a = a.as_two_terms()[1] if a.args[0] is sp.S.NegativeOne else -a
        n, d = _fraction(a)
        if n.is_Integer:
            return ops + 1 + int(bool(n < 0)) + _node_count(d)  # DIV (and NEG)
        if d is not sp.S.One:
            return ops + 1 + (0 if d.is_Integer else _node_count(d)) + _node_count(n)
    elif a.is_Add or a.is_MatAdd:
        # one ADD or SUB between terms, a NEG when every term is negative; a leading negative
        # term turns an ADD into a SUB, which costs the same
        terms = a.args
        negative = [_coeff_isneg(t) for t in terms]
        ops = len(terms) - 1 + int(all(negative))
        return ops + sum(_node_count(-t if neg else t) for t, neg in zip(terms, negative))
    if a.is_Pow and a.exp is sp.S.NegativeOne:
        return ops + 1 + _node_count(a.base)  # DIV
    if a == sp.S.Exp1:
        return ops + 1  # EXP
    if a.is_Pow and a.base == sp.S.Exp1:
        return ops + 1 + _node_count(a.exp)  # EXP
    if a.is_Mul or isinstance(a, LatticeOp):
        ops += len(a.args) - 1
    elif a.args and (a.is_Pow or a.is_Function or isinstance(a, (sp.Derivative, sp.Integral,
                                                                    sp.Sum))):
        ops += 1  # the function, power or reduction itself
    if not a.is_Symbol:
        pushed = a.args
    return ops + sum(_node_count(child) for child in pushed)


def _fraction(a: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """``sympy.fraction(a)``; a product none of whose factors is a denominator is its own
    numerator, known without rebuilding it (the common case, and ``fraction``'s cost)."""
    if a.is_Mul and all(_numerator_factor(t) for t in a.args):
        return a, sp.S.One
    return fraction(a)


def _numerator_factor(t: sp.Expr) -> bool:
    """Whether ``fraction`` puts the factor ``t`` into the numerator as it is."""
    if t.is_commutative and (t.is_Pow or isinstance(t, sp.exp)):
        e = t.as_base_exp()[1]
        return not e.is_negative and (e.is_positive or not e.is_Mul)
    return not (t.is_Rational and not t.is_Integer)


@remembered(maxsize=1 << 16)
def printed(expr) -> str:
    """``str(expr)``, remembered: sort keys print the same atoms again and again."""
    return str(expr)


LARGE = 2**20  # elements of the largest forward array in the large-size profile


def large_sizes(program: Program) -> dict:
    """The example sizes scaled together (whole numbers) until the largest array of the forward
    has about ``LARGE`` elements: where a backward's cost decides what it materialises."""
    sizes = dict(program.sizes)
    largest = max((sp.Mul(*program.shape(name)).xreplace(sizes) for name in program.names
                   if program.shape(name)), default=1)
    rank = max((len(program.shape(name)) for name in program.names), default=1) or 1
    scale = max(1.0, (LARGE / float(largest)) ** (1 / rank))
    return {symbol: max(1, round(value * scale)) for symbol, value in sizes.items()}


def work(expr: sp.Expr, sizes: dict) -> float:
    """The operations of evaluating ``expr`` as array code at concrete ``sizes``, counted as the
    lowering spells it: an elementwise operation costs one per element of its result (its free
    indices), a sum one per element it adds, and a product multiplies its factors over the same
    axes (or a subset of them) first and then the groups in order of growing extent, so a
    contraction ``Sum_i x[i, d]*y[i, h]`` costs ``2*n*d*h``, a matmul's count. A number per form,
    not per layer: it is what ``codegen.cost_model`` reads off the lowered statements, without
    lowering.

    >>> from sympy import IndexedBase, Idx, Sum, symbols
    >>> n, d, h = symbols("n d h", integer=True, positive=True)
    >>> i, k, j = Idx("i", n), Idx("k", d), Idx("j", h)
    >>> x, y = IndexedBase("x"), IndexedBase("y")
    >>> work(Sum(x[i, k] * y[i, j], i), {n: 10, d: 3, h: 2})
    120.0
    >>> work((1 - x[i, j]**2) * y[i, j], {n: 10, h: 2})
    60.0
    """
    def extent(indices) -> float:
        total = 1.0
        for k in indices:
            total *= float(idx_size(k).xreplace(sizes))
        return total

    def visit(node: sp.Basic) -> float:
        if not isinstance(node, sp.Expr) or not node.args or isinstance(node, (sp.Indexed,
                                                                               sp.Idx)):
            return 0.0
        inner = sum(visit(arg) for arg in node.args)
        if isinstance(node, sp.Sum):
            return inner + extent(free_indices(node.function))
        if node.is_Mul:
            groups: list[set] = []  # factors over the same axes, or a subset, multiply first
            for factor in sorted((a for a in node.args if not a.is_Number),
                                 key=lambda a: -len(free_indices(a))):
                axes = set(free_indices(factor))
                home = next((g for g in groups if axes <= g), None)
                if home is None:
                    groups.append(axes)
                else:
                    inner += extent(home)
            groups.sort(key=extent)
            running: set = set()
            for position, axes in enumerate(groups):
                running |= axes
                inner += extent(running) if position else 0
            return inner + (extent(running) if any(a.is_Number and a != -1
                                                   for a in node.args) else 0)
        if node.is_Add:
            return inner + (len(node.args) - 1) * extent(free_indices(node))
        return inner + extent(free_indices(node))  # a power, a function, a case

    return visit(expr)


__all__ = ["LARGE", "large_sizes", "operation_count", "printed", "work"]
