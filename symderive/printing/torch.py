"""torch spelling of lowered array code: a subclass of SymPy's ``TorchPrinter``."""
from __future__ import annotations

from sympy.printing.pytorch import TorchPrinter

from .arrays import ArrayPrinterMixin


class TorchArrayPrinter(ArrayPrinterMixin, TorchPrinter):
    """Prints lowered code as torch, e.g. ``MaxAxis(x, 1) -> x.amax(1)``, one-hot via ``F.one_hot``."""

    target = "torch"
    module = "torch"
    imports = ("import torch", "import torch.nn.functional as F")  # each kept only if the module uses it

    copy_method = "clone"

    def spell_permute(self, x: str, perm: tuple) -> str:
        return f"{x}.permute{perm}"

    def spell_max(self, x: str, axis: int) -> str:
        return f"{x}.amax({axis})"

    def _print_OneHot(self, expr):
        labels, size = expr.args
        return f"F.one_hot({self._print(labels)}, {self._print(size)}).to(dtype)"

    def _print_BroadcastTo(self, expr):
        x, shape = expr.args
        return f"{self.postfix(x)}.expand{self.shape(shape)}"

    def spell_scatter(self, name, shape, index, values) -> list[str]:
        rows = ", ".join(self._print(s) for s in shape[1:])
        flat_values = f"{self.postfix(values)}.reshape(-1{', ' + rows if rows else ''})"
        zeros = f"torch.zeros({self.shape(shape)}, dtype=dtype)"
        return [f"{name} = {zeros}.index_add_(0, {self.postfix(index)}.reshape(-1), {flat_values})"]
