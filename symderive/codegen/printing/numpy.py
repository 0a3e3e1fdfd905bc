"""NumPy spelling of lowered array code: a subclass of SymPy's ``NumPyPrinter``."""
from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..arrays import Conv, MatMul
from .arrays import ArrayPrinterMixin


class NumPyArrayPrinter(ArrayPrinterMixin, NumPyPrinter):
    """Prints lowered code as NumPy, e.g. ``MatMul(h, W2) -> h @ W2``, ``SumAxes(x, (0,)) -> x.sum(0)``."""

    target = "numpy"
    module = "np"
    imports = ("import math", "import numpy as np")  # each kept only if the module uses it
    copy_method = "copy"

    def __init__(self):
        super().__init__({"fully_qualified_modules": True})

    def spell_permute(self, x: str, perm: tuple) -> str:
        return f"{x}.transpose{perm}"

    def spell_max(self, x: str, axis: int) -> str:
        return f"{x}.max({axis})"

    def spell_cast(self, comparison: str) -> str:
        return f"({comparison}).astype(dtype)"

    def _print_OneHot(self, expr):
        labels, size = expr.args
        return f"(np.arange({self._print(size)}) == {self.postfix(labels)}[..., None]).astype(dtype)"

    def _print_BroadcastTo(self, expr):
        x, shape = expr.args
        return f"np.broadcast_to({self._print(x)}, {self.shape(shape)})"

    def spell_flat_scatter(self, name: str, index: str, values: str) -> str:
        return f"np.add.at({name}.reshape(-1), {index}.reshape(-1), {values}.reshape(-1))"

    def spell_add_along(self, name, start, axis, index, values) -> list[str]:
        return [f"{name} = {start}", f"add_along({name}, {axis}, {index}, {values})"]

    def spell_scatter(self, name, start, shape, index, values, axis=0) -> list[str]:
        where = self._print(index)
        if axis:  # along a later axis: np.add.at(dx, (slice(None), idx), values)
            where = f"({'slice(None), ' * axis}{where})"
        return [f"{name} = {start}", f"np.add.at({name}, {where}, {self._print(values)})"]

    def _print_Pad(self, expr):
        x, axis, before, after, ndim = expr.args
        widths = ["(0, 0)"] * int(ndim)
        widths[int(axis)] = f"({self._print(before)}, {self._print(after)})"
        return f"np.pad({self._print(x)}, ({', '.join(widths)}{',' if int(ndim) == 1 else ''}))"

    def _print_Windows(self, expr):
        x, axis, size, step = expr.args
        view = (f"np.lib.stride_tricks.sliding_window_view({self._print(x)}, "
                f"{self._print(size)}, axis={int(axis)})")
        return view if step == 1 else f"{view}[{':, ' * int(axis)}::{self._print(step)}]"

    def _print_Conv(self, expr):
        a, b, stride, dilation, kind = expr.args
        return (f"{Conv.KINDS[int(kind)]}({self._print(a)}, {self._print(b)}, "
                f"{self.shape(stride)}, {self.shape(dilation)})")

    def _print_Piecewise(self, expr):
        return self.spell_where(expr)

    # -- fused statements: one fresh array, updated in place (``codegen.fuse``) ----------------
    def _print_AddCMul(self, expr):
        a, x, scale = expr.args
        return f"{self._print(a)} + {self.product(x, scale)}"

    def spell_start(self, name: str, start) -> list[str]:
        if type(start).__name__ == "AddCMul":  # the product is the fresh array; add into it
            a, x, scale = start.args
            return [f"{name} = {self.product(x, scale)}", self.spell_add(name, a)]
        return super().spell_start(name, start)

    def spell_add(self, name: str, term) -> str:
        if term.could_extract_minus_sign():
            return f"{name} -= {self._print(-term)}"
        return f"{name} += {self._print(term)}"

    def spell_addmm(self, name: str, a, b, sign) -> str:
        return f"{name} {'-' if sign < 0 else '+'}= {self._print(MatMul(a, b))}"

    def spell_mul(self, name: str, scale) -> str:
        return f"{name} *= {self._print(scale)}"

    def spell_addcmul(self, name: str, x, scale) -> str:
        if scale.could_extract_minus_sign():
            return f"{name} -= {self.product(x, -scale)}"
        return f"{name} += {self.product(x, scale)}"

    def _print_AddMatMul(self, expr):
        c, a, b = expr.args
        return self._print(sp.Add(c, MatMul(a, b)))  # NumPy has no addmm: the sum as written

    def _print_SumOfProduct(self, expr):
        a, b, axes, ndim = expr.args
        letters = "ijklmnopqrstuvwxyz"[:int(ndim)]
        kept = "".join(c for k, c in enumerate(letters) if k not in {int(x) for x in axes})
        return f'np.einsum("{letters},{letters}->{kept}", {self._print(a)}, {self._print(b)})'

    def _print_MaxValues(self, expr):
        x, axis = expr.args
        return f"{self.postfix(x)}.max({int(axis)})"
