"""What the NumPy and torch printers share: operator syntax (``@``, ``.sum(axis)``, ``[:, None]``,
advanced indexing) is the same in both libraries; only the calls that differ are left to each target
as small ``spell_*`` methods."""
from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ...program.ops import OPS, op_for
from ..arrays import Grouped, LoweringError, SumAxes, holds_array
from ..fuse import scalars_grouped

# A printed expression that is a name, a call or ends in a subscript/attribute binds tighter than
# any operator, so it needs no parentheses in front of ``.sum(0)`` or ``@``.
_POSTFIX_CLASSES = ("Transpose", "NewAxes", "SumAxes", "MaxAxis", "ArgMaxAxis",
                    "MaxWithIndices", "Item", "Contiguous", "Einsum", "Take", "Arange", "OneHot", "Equal", "AtLeast", "Eye", "Reshape", "BroadcastTo", "Zeros",
                    "Full", "Abs", "Sliced", "Pad", "MaxValues", "SumOfProduct", "Grouped",
                    "Softmax", "LogSoftmaxAt", "Conv", "Windows", "LogSoftmax",
                    "SoftmaxAdjoint", "LogSoftmaxAdjoint")


def _may_divide_by_zero(expr: sp.Expr) -> bool:
    """Whether ``expr``, of plain numbers alone (sizes, constants), divides by something that can
    be 0: anything but a number or a constant declared positive (which the emitted code checks;
    a size, declared positive, is read from a shape that can be empty)."""
    if holds_array(expr) or not isinstance(expr, (sp.Mul, sp.Pow)):
        return False
    denominator = sp.fraction(expr)[1]
    return not denominator.is_number and not (
        denominator.is_positive and not any(s.is_integer for s in denominator.free_symbols))


class ArrayPrinterMixin:
    target = ""
    placed = ""  # extra keyword arguments for arrays made from scratch (torch: the device)

    # -- comparisons of integer arrays, as 1 or 0 in the working dtype ---------------------------
    def _print_Equal(self, expr):
        a, b = expr.args
        return self.spell_cast(f"{self._print(a)} == {self._print(b)}")

    def _print_AtLeast(self, expr):
        a, b, strict = expr.args
        return self.spell_cast(f"{self._print(a)} {'>' if strict else '>='} {self._print(b)}")

    # -- helpers ---------------------------------------------------------------------------------
    def postfix(self, expr) -> str:
        """``expr`` printed so that ``.method()`` or ``[...]`` can follow it."""
        text = self._print(expr)
        if isinstance(expr, sp.Symbol) or type(expr).__name__ in _POSTFIX_CLASSES or \
                isinstance(expr, (sp.Function, sp.Max, sp.Min)) and op_for(expr):
            return text
        return f"({text})"

    def shape(self, shape) -> str:
        items = [self._print(s) for s in shape]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"

    def axes(self, axes) -> str:
        items = [str(int(a)) for a in axes]
        return items[0] if len(items) == 1 else f"({', '.join(items)})"

    # -- SymPy nodes -----------------------------------------------------------------------------
    def _as_ordered_terms(self, expr, order=None):
        """SymPy's order, but positive terms first: ``hprebn - bnmeani``, not ``-bnmeani + hprebn``."""
        terms = super()._as_ordered_terms(expr, order=order)
        return sorted(terms, key=lambda term: term.could_extract_minus_sign())

    def _print_Mul(self, expr):
        if _may_divide_by_zero(expr):
            numerator, denominator = sp.fraction(expr)
            return f"quotient({self._print(numerator)}, {self._print(denominator)})"
        # SymPy gives a negative product the precedence of a sum before stripping its sign, so
        # a factor that binds like * (``a @ b``) would lose its parentheses: print the sign apart.
        if expr.as_coeff_Mul()[0].is_negative:
            return "-" + self.parenthesize(-expr, PRECEDENCE["Mul"], strict=True)
        return super()._print_Mul(expr)

    def _print_Symbol(self, expr):
        return expr.name

    def _print_Function(self, expr):
        op = op_for(expr)
        if op is None:
            raise LoweringError(f"no {self.target} spelling for '{expr.func}'")
        # of sizes and constants alone, a Python float: it keeps the arrays' dtype
        spelling = getattr(op, self.target) if holds_array(expr) else \
            _SCALAR.get(op.name, f"math.{op.name}")
        return self.spell(spelling, expr.args)

    def spell(self, spelling: str, args) -> str:
        """A call of the op table's ``spelling``: a name called with the arguments, or a template
        with ``{0}``, ``{1}`` (the arguments) and ``{p0}`` (argument 0, parenthesised unless it is
        a name or a call, to negate it or call a method on it)."""
        if "{" not in spelling:
            return f"{spelling}({', '.join(self._print(a) for a in args)})"
        texts = [self._print(a) for a in args]
        return spelling.format(*texts, **{f"p{k}": self.postfix(a) for k, a in enumerate(args)})

    def _print_Pi(self, expr):
        return "math.pi"

    def _print_Exp1(self, expr):
        return "math.e"

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if _may_divide_by_zero(expr):
            return f"quotient(1, {self._print(base ** -exponent)})"
        # not strict: ** is right-associative, so a power as the base needs parentheses too
        text = self.parenthesize(base, PRECEDENCE["Pow"], strict=False)
        if exponent == -1 and base.is_integer:  # a size: 1/n (arrays keep x**-1, as autograd)
            return f"1/{text}"
        if exponent.is_Integer:
            return f"{text}**{exponent}"
        return f"{text}**({self._print(exponent)})"

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    # -- array operations ------------------------------------------------------------------------
    def _print_Transpose(self, expr):
        x, perm = expr.args
        if tuple(perm) == (1, 0):
            return f"{self.postfix(x)}.T"
        return self.spell_permute(self.postfix(x), tuple(int(p) for p in perm))

    def _print_NewAxes(self, expr):
        x, pattern = expr.args
        items = [":" if p == 0 else "None" for p in pattern]
        while items and items[-1] == ":":
            items.pop()
        return f"{self.postfix(x)}[{', '.join(items)}]"

    def _print_SumAxes(self, expr):
        x, axes, ndim = expr.args
        every = len(axes) == int(ndim)  # over every axis: a plain .sum()
        return f"{self.postfix(x)}.sum({'' if every else self.axes(axes)})"

    def _print_MaxAxis(self, expr):
        x, axis = expr.args
        return self.spell_max(self.postfix(x), int(axis))

    def _print_ArgMaxAxis(self, expr):
        x, axis = expr.args
        return f"{self.postfix(x)}.argmax({int(axis)})"

    def _print_Item(self, expr):
        pair, k = expr.args
        return f"{self.postfix(pair)}[{int(k)}]"

    def _print_MatMul(self, expr):
        a, b = expr.args
        return f"{self.postfix(a)} @ {self.postfix(b)}"

    def _print_Einsum(self, expr):
        spec, *arrays = expr.args
        return f'{self.module}.einsum("{spec}", {", ".join(self._print(a) for a in arrays)})'

    def _print_Take(self, expr):
        x, *indices = expr.args
        return f"{self.postfix(x)}[{', '.join(self._print(i) for i in indices)}]"

    def _print_Colon(self, expr):
        return ":"

    def _print_Sliced(self, expr):
        x, window = expr.args
        items = []
        for start, stop in window:
            if start == 0 and stop == 0:
                items.append(":")
            else:
                items.append(f"{'' if start == 0 else self._print(start)}:{self._print(stop)}")
        while items and items[-1] == ":":
            items.pop()
        return f"{self.postfix(x)}[{', '.join(items)}]"

    def _print_Arange(self, expr):
        return f"{self.module}.arange({self._print(expr.args[0])}{self.placed})"

    def _print_Eye(self, expr):
        sizes = ", ".join(self._print(size) for size in expr.args)
        return f"{self.module}.eye({sizes}, dtype=dtype{self.placed})"

    def _print_Zeros(self, expr):
        return f"{self.module}.zeros({self.shape(expr.args[0])}, dtype=dtype{self.placed})"

    def _print_Full(self, expr):
        shape, value = expr.args
        return (f"{self.module}.full({self.shape(shape)}, {self._print(value)}, "
                f"dtype=dtype{self.placed})")

    def _print_Reshape(self, expr):
        x, shape = expr.args
        return f"{self.postfix(x)}.reshape{self.shape(shape)}"

    def spell_where(self, expr: sp.Piecewise) -> str:
        """A lowered Piecewise as nested ``where`` calls, first branch outermost:
        ``np.where(x > 0, x, np.where(x > -1, 0.5*x, -1.0))``. Where no branch is an array, the
        last one becomes an array of the working dtype, so Python floats cannot widen the result
        (NumPy) or give it torch's default dtype."""
        *pairs, (otherwise, _) = expr.args
        text = self._print(otherwise)
        if not any(holds_array(value) for value, _ in expr.args):
            text = f"{self.module}.asarray({text}, dtype=dtype{self.placed})"
        for value, condition in reversed(pairs):
            text = f"{self.module}.where({self.condition(condition)}, {self._print(value)}, {text})"
        return text

    def condition(self, condition) -> str:
        """A comparison ``(x > 0)``; And and Or of several joined by ``&`` and ``|``."""
        if isinstance(condition, (sp.And, sp.Or)):
            joined = (" & " if isinstance(condition, sp.And) else " | ").join(
                self.condition(c) for c in condition.args)
            return f"({joined})"
        lhs, rhs = (self.parenthesize(side, PRECEDENCE["Relational"] + 1, strict=False)
                    for side in condition.args)
        return f"({lhs} {condition.rel_op} {rhs})"

    def statement(self, name: str, code, accumulate: bool) -> list[str]:
        """The lines that assign ``code`` to ``name``. Nothing is modified in place unless this
        statement made it: accumulating is ``name = name + code``, and a bare name is copied,
        so no two returned arrays share memory."""
        if type(code).__name__ in ("ScatterAdd", "FlatScatterAdd"):
            shape, index, values, *axis = code.args
            start = f"{name}.{self.copy_method}()" if accumulate else \
                f"{self.module}.zeros({self.shape(shape)}, dtype=dtype{self.placed})"
            if type(code).__name__ == "FlatScatterAdd":  # (a fresh array: its flat view is it)
                return [f"{name} = {start}", self.spell_flat_scatter(
                    name, self.postfix(index), self.postfix(values))]
            if axis and int(axis[0]):
                return self.spell_scatter(name, start, shape, index, values, int(axis[0]))
            return self.spell_scatter(name, start, shape, index, values)
        if type(code).__name__ == "AxisScatterAdd":
            shape, index, values, axis = code.args
            start = f"{name}.{self.copy_method}()" if accumulate else \
                f"{self.module}.zeros({self.shape(shape)}, dtype=dtype{self.placed})"
            return self.spell_add_along(name, start, int(axis), self._print(index),
                                        self._print(values))
        if type(code).__name__ == "AddAt":
            base, index, value = code.args
            where = ", ".join(self._print(i) for i in index)
            update = f"-= {self._print(-value)}" if value.could_extract_minus_sign() \
                else f"+= {self._print(value)}"
            copied = isinstance(base, (sp.Add, sp.Mul, sp.Pow)) or type(base).__name__ in (
                "Zeros", "Full")  # made here; anything else may be a view: copy before updating
            start = self._print(base) if copied else f"{self.postfix(base)}.{self.copy_method}()"
            return [f"{name} = {start}", f"{name}[{where}] {update}"]
        if type(code).__name__ == "InPlace":
            return self.in_place(name, code)
        if accumulate:
            return [f"{name} = {name} + {_unwrapped(self._print(code))}"]
        return [f"{name} = {_unwrapped(self.fresh(code))}"]

    # -- fused statements (``codegen.fuse``) ---------------------------------------------------
    def _print_Grouped(self, expr):
        inner = expr.args[0]
        if isinstance(inner, sp.Symbol) or inner.is_Number and not inner.is_negative \
                or _may_divide_by_zero(inner):  # (a quotient(...) call needs no parentheses)
            return self._print(inner)
        return f"({_unwrapped(self._print(inner))})"

    def _print_SumOfProduct(self, expr):
        a, b, axes, ndim = expr.args
        return self._print(SumAxes(a * b, axes, ndim))

    def product(self, x, scale) -> str:
        """``x*scale`` with the factors of ``scale`` multiplied first."""
        if isinstance(scale, (sp.Mul, sp.Add)) or scale.is_Rational and not scale.is_Integer:
            grouped = scalars_grouped(sp.Mul.make_args(scale))
            return self._print(sp.Mul(x, Grouped(grouped)))
        return self._print(sp.Mul(x, scale))

    def in_place(self, name: str, code) -> list[str]:
        """The lines of an ``InPlace``: its fresh start, then one in-place update a step."""
        start, steps = code.args
        lines = self.spell_start(name, start)
        for kind, *operands in steps:
            lines.append(getattr(self, f"spell_{kind}")(name, *operands))
        return lines

    def spell_start(self, name: str, start) -> list[str]:
        return [f"{name} = {_unwrapped(self._print(start))}"]

    def fresh(self, code) -> str:
        """``code`` printed so that a bare name is copied: two names (two returned gradients) never
        hold one array. Views (``.T``, ``reshape``, broadcasts) are kept, as NumPy code keeps them."""
        if isinstance(code, sp.Symbol):
            return f"{self._print(code)}.{self.copy_method}()"
        return self._print(code)


def _unwrapped(text: str) -> str:
    """``text`` without one pair of parentheses around all of it."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for char in text[1:-1]:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return text
    return text[1:-1] if depth == 0 else text


# Python-scalar spellings (an op of sizes and constants alone) where ``math`` has no function of
# the table's name.
_SCALAR = {"max": "max({0}, {1})", "min": "min({0}, {1})", "abs": "abs({0})",
           "sign": "float(({0} > 0) - ({0} < 0))",
           "heaviside": "(1.0 if {p0} > 0 else 0.0 if {p0} < 0 else float({1}))",
           "sigmoid": "(1/(1 + math.exp(-{p0})))", "softplus": "math.log1p(math.exp({0}))",
           "log_sigmoid": "(-math.log1p(math.exp(-{p0})))"}


# The op table's functions print through the table, not through SymPy's own function names.
for _function in OPS:
    if _function is not sp.Pow:  # functions, Max and Min
        setattr(ArrayPrinterMixin, f"_print_{_function.__name__}", ArrayPrinterMixin._print_Function)
