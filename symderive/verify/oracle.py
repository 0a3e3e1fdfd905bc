"""The reference evaluator ``check`` trusts: it computes a program's values straight from its
index expressions in torch (float64 by default), sharing no code with the lowering or the printers.
A value is a tensor together with the ``Idx`` each of its dims stands for; operands are aligned by
index before elementwise arithmetic, a ``Sum`` sums its bound dims (a bound index the summand does
not use multiplies by its range), and every read ``A[e1, e2, ...]`` evaluates its index expressions
as integer tensors and indexes ``A`` with them, which covers plain, transposed, label, gather,
flattened, affine and diagonal reads alike. Being plain torch, what it computes is differentiated
by autograd.
"""
from __future__ import annotations

import math

import sympy as sp
import torch

from ..program.ir import Program, flatten_parts, idx_size, indices_of, lhs_index_set, name_of
from ..program.ops import ArgMax, Maximum, Piecewise, expm1, log1p, log_sigmoid, sigmoid, softplus


def _constant(t: torch.Tensor) -> bool:
    """A value no input reaches (a number or constant): autograd has nothing to send it."""
    return not t.requires_grad


def _max(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch's conventions: against a constant as relu (the constant wins a tie, so the
    derivative there is 0); between two values torch.maximum (a tie splits 0.5/0.5)."""
    if _constant(b):
        return torch.where(a > b, a, b)
    if _constant(a):
        return torch.where(b > a, b, a)
    return torch.maximum(a, b)


def _min(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The stated convention: against a constant the value wins a tie (the derivative from the
    left, 1, so that Max(x, 0) + slope*Min(x, 0) has leaky relu's slope at 0); between two
    values torch.minimum (a tie splits 0.5/0.5)."""
    if _constant(b):
        return torch.where(a <= b, a, b)
    if _constant(a):
        return torch.where(b <= a, b, a)
    return torch.minimum(a, b)


def _heaviside(x: torch.Tensor, at_zero: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype) + (x == 0).to(x.dtype) * at_zero


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))


# Our own spellings, kept apart from the op table's strings so a wrong spelling there shows up:
# the named functions by logaddexp, the steps by comparisons, special functions by torch.special.
FUNCTIONS = {sp.exp: torch.exp, sp.log: torch.log, sp.tanh: torch.tanh, sp.sin: torch.sin,
             sp.cos: torch.cos, sp.sinh: torch.sinh, sp.cosh: torch.cosh, sp.Abs: torch.abs,
             sp.Pow: torch.pow, sp.Max: _max, sp.Min: _min, sp.sign: torch.sgn,
             sp.Heaviside: _heaviside, sp.erf: torch.special.erf, log1p: torch.special.log1p,
             expm1: torch.special.expm1, sp.atan: torch.arctan,
             sigmoid: lambda x: torch.exp(-_softplus(-x)), softplus: _softplus,
             log_sigmoid: lambda x: -_softplus(-x)}

_COMPARE = {sp.StrictGreaterThan: torch.gt, sp.GreaterThan: torch.ge, sp.StrictLessThan: torch.lt,
            sp.LessThan: torch.le}

Value = tuple  # (tensor, [Idx, ...]): the tensor's dims stand for those indices, in that order


def _placed(tensor: torch.Tensor, ks: list, axes: list) -> torch.Tensor:
    """``tensor`` (dims standing for ``ks``) permuted into the order of ``axes``, with a size-1 dim
    for each axis it lacks, so that it broadcasts over ``axes``."""
    order = [k for k in axes if k in ks]
    tensor = tensor.permute([ks.index(k) for k in order])
    return tensor.reshape([tensor.shape[order.index(k)] if k in ks else 1 for k in axes])


def _aligned(values: list[Value]) -> tuple[list[torch.Tensor], list[sp.Idx]]:
    """The tensors placed over the union of their indices (in order of first appearance)."""
    axes = list(dict.fromkeys(k for _, ks in values for k in ks))
    return [_placed(tensor, ks, axes) for tensor, ks in values], axes


class _Evaluator:
    def __init__(self, arrays: dict, scalars: dict, dtype: torch.dtype):
        self.arrays, self.dtype = arrays, dtype
        self.scalars = {str(symbol): value for symbol, value in scalars.items()}
        self.sizes: dict[sp.Idx, int] = {}

    def size(self, k: sp.Idx) -> int:
        if k not in self.sizes:
            extent = idx_size(k)
            self.sizes[k] = int(extent.xreplace({s: self.scalars[s.name]
                                                 for s in extent.free_symbols}))
        return self.sizes[k]

    def number(self, value) -> Value:
        if isinstance(value, int) or getattr(value, "is_Integer", False):
            return torch.tensor(int(value)), []
        return torch.tensor(float(value), dtype=self.dtype), []

    def __call__(self, e: sp.Expr) -> Value:
        if isinstance(e, sp.Idx):
            return torch.arange(self.size(e)), [e]
        if isinstance(e, sp.Indexed):
            tensors, axes = _aligned([self(index) for index in e.indices])
            return self.arrays[name_of(e)][tuple(t.long() for t in tensors)], axes
        if isinstance(e, sp.Symbol):
            if e.name in self.arrays:
                return self.arrays[e.name], []
            if e.name in self.scalars:
                return self.number(self.scalars[e.name])
            raise KeyError(f"'{e}' has no value: pass it in arrays or scalars")
        if e.is_number:
            return self.number(e)
        if isinstance(e, (sp.Sum, Maximum, ArgMax)):
            return self.reduce(e)
        if isinstance(e, sp.KroneckerDelta):
            (a, b), axes = _aligned([self(arg) for arg in e.args])
            return (a == b).to(self.dtype), axes
        if isinstance(e, (sp.Add, sp.Mul)):
            tensors, axes = _aligned([self(arg) for arg in e.args])
            combine = torch.add if isinstance(e, sp.Add) else torch.mul
            result = tensors[0]
            for tensor in tensors[1:]:
                result = combine(result, tensor)
            return result, axes
        if isinstance(e, Piecewise):
            return self.piecewise(e)
        if type(e) in FUNCTIONS:
            tensors, axes = _aligned([self(arg) for arg in e.args])
            tensors = [t if t.is_floating_point() else t.to(self.dtype) for t in tensors]  # n**-1
            return FUNCTIONS[type(e)](*tensors), axes
        raise NotImplementedError(f"the oracle cannot evaluate '{e}' ({type(e).__name__})")

    def piecewise(self, e: Piecewise) -> Value:
        """The first branch whose condition holds, by ``torch.where`` from the last branch out;
        comparisons by torch's own operators, ``&`` and ``|`` by ``logical_and``/``logical_or``."""
        def truth(condition) -> Value:
            if condition is sp.true:
                return torch.tensor(True), []
            if isinstance(condition, (sp.And, sp.Or)):
                (first, *rest), axes = _aligned([truth(c) for c in condition.args])
                join = torch.logical_and if isinstance(condition, sp.And) else torch.logical_or
                for other in rest:
                    first = join(first, other)
                return first, axes
            (a, b), axes = _aligned([self(side) for side in condition.args])
            return _COMPARE[type(condition)](a, b), axes

        parts = [value for pair in e.args for value in (self(pair[0]), truth(pair[1]))]
        tensors, axes = _aligned(parts)
        tensors = [t if t.dtype == torch.bool or t.is_floating_point() else t.to(self.dtype)
                   for t in tensors]
        result = tensors[-2]
        for value, holds in zip(tensors[-4::-2], tensors[-3::-2]):
            result = torch.where(holds, value, result)
        return result.expand(torch.broadcast_shapes(*(t.shape for t in tensors))), axes

    def reduce(self, e) -> Value:
        """``Sum`` over each bound index; ``Maximum`` as ``max(dim).values`` (autograd sends a tie's
        gradient to the one index torch's ``max`` returns, the first on CPU, as the derived
        ``ArgMax`` does); ``ArgMax`` as ``argmax``, which picks the same index."""
        tensor, axes = self(e.function)
        axes = list(axes)
        for k in [limit[0] for limit in e.limits]:
            if k not in axes:
                tensor = tensor * self.size(k)  # a Maximum always uses its index (validated)
                continue
            dim = axes.index(k)
            if isinstance(e, sp.Sum):
                tensor = tensor.sum(dim)
            elif isinstance(e, Maximum):
                tensor = tensor.max(dim).values
            else:
                tensor = tensor.argmax(dim)
            axes.pop(dim)
        return tensor, axes

    def over(self, e: sp.Expr, axes: list[sp.Idx]) -> torch.Tensor:
        """``e`` evaluated and broadcast over exactly ``axes``, in that order."""
        tensor, ks = self(e)
        extra = [k for k in ks if k not in axes]
        if extra:
            raise ValueError(f"'{e}' is free in {extra}, which are not among the axes {axes}")
        tensor = _placed(tensor, ks, axes).expand([self.size(k) for k in axes])
        return tensor if tensor.is_floating_point() else tensor.to(self.dtype)


def evaluate_expression(expr: sp.Expr, axes, arrays: dict, scalars: dict,
                        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``expr`` at every point of ``axes`` (a list of Idx), as a tensor with one dim per axis.
    ``arrays`` maps names (str) to tensors; ``scalars`` maps size and constant Symbols to
    numbers."""
    return _Evaluator(arrays, scalars, dtype).over(expr, list(axes))


def evaluate(program: Program, inputs: dict, dtype: torch.dtype = torch.float64) -> dict:
    """Every value of ``program`` by name, inputs included (float inputs cast to ``dtype``, which
    keeps a leaf that already has it). Statements run in order; ``+=`` adds to the value so far.
    Each statement's value is a fresh tensor, so a caller can ``retain_grad`` it."""
    values = {name: value.to(dtype) if value.is_floating_point() else value
              for name, value in inputs.items()}
    evaluator = _Evaluator(values, dict(program.sizes) | dict(program.constants), dtype)
    for statement in program.body:
        tracking = torch.is_grad_enabled() and any(
            v.requires_grad for v in values.values() if isinstance(v, torch.Tensor))
        tensor = evaluator.over(statement.rhs, lhs_index_set(statement.lhs))
        shape = [math.prod(evaluator.size(k) for k in flatten_parts(index) or [index])
                 for index in indices_of(statement.lhs)]
        tensor = tensor.reshape(shape)
        if statement.accumulate:
            tensor = values[statement.name] + tensor
        elif any(tensor is value for value in values.values()):
            tensor = tensor.clone()
        if tracking and tensor.is_floating_point() and not tensor.requires_grad:
            # piecewise constant (Heaviside, sign): no gradient flows back through it, but its
            # own adjoint, what later statements make of it, is still asked for
            tensor = tensor.detach().requires_grad_()
        values[statement.name] = tensor
    return values


__all__ = ["FUNCTIONS", "evaluate", "evaluate_expression"]
