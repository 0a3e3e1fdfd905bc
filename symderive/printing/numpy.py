"""NumPy spelling of lowered array code: a subclass of SymPy's ``NumPyPrinter``."""
from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

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

    def _print_OneHot(self, expr):
        labels, size = expr.args
        return f"(np.arange({self._print(size)}) == {self.postfix(labels)}[..., None]).astype(dtype)"

    def _print_BroadcastTo(self, expr):
        x, shape = expr.args
        return f"np.broadcast_to({self._print(x)}, {self.shape(shape)})"

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
