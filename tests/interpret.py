"""A deliberately naive oracle: evaluate an index expression element by element with Python loops,
independently of the lowering, so tests can compare vectorised code (or a rewrite) against it."""
import itertools
import math

import numpy as np
import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from symderive.program import ops
from symderive.program.ir import idx_size
from symderive.program.ops import ArgMax, Maximum

FUNCTIONS = {sp.exp: math.exp, sp.log: math.log, sp.tanh: math.tanh, sp.sin: math.sin,
             sp.cos: math.cos, sp.sinh: math.sinh, sp.cosh: math.cosh, sp.Abs: abs, sp.Max: max,
             sp.Min: min, sp.sign: lambda v: float(bool(v > 0)) - float(bool(v < 0)),
             sp.Heaviside: lambda v, at0=0.5: 1.0 if v > 0 else 0.0 if v < 0 else float(at0),
             sp.erf: math.erf, sp.atan: math.atan, ops.log1p: math.log1p, ops.expm1: math.expm1,
             ops.sigmoid: lambda v: 1 / (1 + math.exp(-v)) if v > -700 else 0.0,
             ops.softplus: lambda v: max(v, 0.0) + math.log1p(math.exp(-abs(v))),
             ops.log_sigmoid: lambda v: min(v, 0.0) - math.log1p(math.exp(-abs(v)))}


def value(expr, arrays: dict, sizes: dict, at: dict):
    """``expr`` at the index values ``at`` (Idx -> int); ``arrays`` maps names to numpy arrays."""
    if isinstance(expr, sp.Idx):
        return at[expr]
    if isinstance(expr, sp.Indexed):
        position = tuple(int(value(k, arrays, sizes, at)) for k in expr.indices)
        return arrays[str(expr.base.label)][position]
    if isinstance(expr, sp.Symbol):
        return arrays[expr.name] if expr.name in arrays else float(expr.subs(sizes))
    if expr.is_Number:
        return float(expr)
    if isinstance(expr, ExprWithLimits):
        (index,) = [limit[0] for limit in expr.limits][:1]
        rest = [limit[0] for limit in expr.limits][1:]
        body = expr.func(expr.function, *rest) if rest else expr.function
        size = int(idx_size(index).subs(sizes))
        items = [value(body, arrays, sizes, {**at, index: m}) for m in range(size)]
        if isinstance(expr, sp.Sum):
            return sum(items)
        if isinstance(expr, Maximum):
            return max(items)
        if isinstance(expr, ArgMax):
            return int(np.argmax(items))
    if isinstance(expr, sp.KroneckerDelta):
        a, b = (value(arg, arrays, sizes, at) for arg in expr.args)
        return 1.0 if a == b else 0.0
    if isinstance(expr, sp.Add):
        return sum(value(a, arrays, sizes, at) for a in expr.args)
    if isinstance(expr, sp.Mul):
        return math.prod(value(a, arrays, sizes, at) for a in expr.args)
    if isinstance(expr, sp.Pow):
        return value(expr.base, arrays, sizes, at) ** value(expr.exp, arrays, sizes, at)
    if isinstance(expr, ops.Piecewise):  # the first branch whose condition holds
        return next(value(v, arrays, sizes, at) for v, c in expr.args
                    if holds(c, arrays, sizes, at))
    if expr.func in FUNCTIONS:
        return FUNCTIONS[expr.func](*(value(a, arrays, sizes, at) for a in expr.args))
    raise NotImplementedError(expr)


def holds(condition, arrays: dict, sizes: dict, at: dict) -> bool:
    """A Piecewise condition at the index values ``at``."""
    if condition is sp.true:
        return True
    if isinstance(condition, (sp.And, sp.Or)):
        join = all if isinstance(condition, sp.And) else any
        return join(holds(c, arrays, sizes, at) for c in condition.args)
    a, b = (value(side, arrays, sizes, at) for side in condition.args)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[condition.rel_op]


def tensor(expr, axes, arrays: dict, sizes: dict) -> np.ndarray:
    """``expr`` evaluated at every value of ``axes`` (a list of Idx), as an array."""
    shape = [int(idx_size(k).subs(sizes)) for k in axes]
    out = np.zeros(shape)
    for position in itertools.product(*[range(s) for s in shape]):
        out[position] = value(expr, arrays, sizes, dict(zip(axes, position)))
    return out
