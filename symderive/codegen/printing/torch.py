"""torch spelling of lowered array code: a subclass of SymPy's ``PythonCodePrinter`` (not its
``TorchPrinter``, which imports torch when it loads: emitting a module must not)."""
from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..arrays import Arange, ArgMaxAxis, Conv, Pad, holds_array
from .arrays import ArrayPrinterMixin


class TorchArrayPrinter(ArrayPrinterMixin, PythonCodePrinter):
    """Prints lowered code as torch, e.g. ``MaxAxis(x, 1) -> x.max(1).values``, one-hot via
    ``F.one_hot``; arrays made from scratch go on the inputs' device."""

    printmethod = "_torchcode"  # an operation's own torch spelling (LeadingSums._torchcode)
    target = "torch"
    module = "torch"
    imports = ("import inspect", "import math", "import torch",
               "import torch.nn.functional as F")  # kept if used
    copy_method = "clone"
    placed = ", device=device"

    def spell_permute(self, x: str, perm: tuple) -> str:
        return f"{x}.permute{perm}"

    def spell_max(self, x: str, axis: int) -> str:
        # not amax: its autograd splits the gradient between ties, the derived rule does not
        return f"{x}.max({axis}).values"

    def _print_Max(self, expr):
        return self.spell_extremum(expr, "maximum", "min")

    def _print_Min(self, expr):
        return self.spell_extremum(expr, "minimum", "max")

    def spell_extremum(self, expr, function: str, bound: str) -> str:
        """``torch.maximum`` of two tensors; against a constant ``torch.clamp(x, min=c)``, since
        ``torch.maximum`` takes tensors only (the derived backward decides the kinks, not this)."""
        a, b = expr.args
        if holds_array(a) and holds_array(b):
            return f"torch.{function}({self._print(a)}, {self._print(b)})"
        if not (holds_array(a) or holds_array(b)):
            return self._print_Function(expr)
        array, constant = (a, b) if holds_array(a) else (b, a)
        return f"torch.clamp({self._print(array)}, {bound}={self._print(constant)})"

    def spell_cast(self, comparison: str) -> str:
        return f"({comparison}).to(dtype)"

    def _print_OneHot(self, expr):
        labels, size = expr.args
        if labels.has(Arange):
            # computed positions (j + 1 over a range of n) may fall outside range(size), where
            # the row is zeros; F.one_hot refuses such a class, a comparison gives the zeros
            return (f"(torch.arange({self._print(size)}{self.placed}) == "
                    f"{self.postfix(labels)}[..., None]).to(dtype)")
        # F.one_hot takes int64 alone; input labels may be int32 (indexing takes both)
        long = "" if isinstance(labels, ArgMaxAxis) else ".long()"
        return f"F.one_hot({self.postfix(labels)}{long}, {self._print(size)}).to(dtype)"

    def _print_BroadcastTo(self, expr):
        x, shape = expr.args
        return f"{self.postfix(x)}.expand{self.shape(shape)}"

    def spell_flat_scatter(self, name: str, index: str, values: str) -> str:
        return f"{name}.view(-1).index_add_(0, {index}.reshape(-1), {values}.reshape(-1))"

    def spell_add_along(self, name, start, axis, index, values) -> list[str]:
        return [f"{name} = {start}.scatter_add_({axis}, {index}, {values})"]

    def spell_scatter(self, name, start, shape, index, values, axis=0) -> list[str]:
        # the index's axes of ``values`` (between the scattered axis and the trailing ones) made
        # one: flatten, not reshape(..., -1, ...), which cannot infer a size of an empty batch
        flat = f"{self.postfix(values)}.flatten({axis}, {axis - len(shape)})"
        return [f"{name} = {start}.index_add_({axis}, {self.postfix(index)}.reshape(-1), {flat})"]

    def _print_Pad(self, expr):
        padding = _output_padding(expr)
        if padding is not None:  # zeros past a transposed convolution's reach: one call
            conv, extra = padding
            return self._print_Conv(conv, extra)
        x, axis, before, after, ndim = expr.args
        widths = ["0, 0"] * (int(ndim) - 1 - int(axis))  # F.pad lists the last axis first
        widths.append(f"{self._print(before)}, {self._print(after)}")
        return f"F.pad({self._print(x)}, ({', '.join(widths)}))"

    def _print_Windows(self, expr):
        x, axis, size, step = expr.args
        return f"{self.postfix(x)}.unfold({int(axis)}, {self._print(size)}, {self._print(step)})"

    def _print_Conv(self, expr, output_padding=()):
        a, b, stride, dilation, kind = expr.args
        if kind == 2:  # the kernel's adjoint: ATen's own weight-gradient kernel, by the helper
            return (f"aten_conv_weight({self._print(a)}, {self._print(b)}, {self.shape(stride)}, "
                    f"{self.shape(dilation)})")
        options = "".join(f", {name}={self.shape(value) if len(value) > 1 else int(value[0])}"
                          for name, value, default in (("stride", stride, 1),
                                                       ("dilation", dilation, 1),
                                                       ("output_padding", output_padding, 0))
                          if any(v != default for v in value))
        return f"F.{Conv.KINDS[int(kind)]}{len(stride)}d({self._print(a)}, {self._print(b)}{options})"

    def _print_Piecewise(self, expr):
        return self.spell_where(expr)

    # -- fused statements: one fresh tensor, updated in place (``codegen.fuse``) ---------------
    def _print_AddCMul(self, expr):
        a, x, scale = expr.args
        if not holds_array(scale):  # a Python number: torch.addcmul takes tensors only
            return f"torch.add({self._print(a)}, {self._print(x)}, alpha={self._print(scale)})"
        return f"torch.addcmul({self._print(a)}, {self._print(x)}{self.scaled(scale)})"

    def spell_add(self, name: str, term) -> str:
        if term.could_extract_minus_sign():
            return f"{name}.sub_({self._print(-term)})"
        return f"{name}.add_({self._print(term)})"

    def spell_addmm(self, name: str, a, b, sign) -> str:
        return f"{name}.addmm_({self._print(a)}, {self._print(b)}{', alpha=-1' if sign < 0 else ''})"

    def spell_mul(self, name: str, scale) -> str:
        return f"{name}.mul_({self._print(scale)})"

    def spell_addcmul(self, name: str, x, scale) -> str:
        if not holds_array(scale):
            return f"{name}.add_({self._print(x)}, alpha={self._print(scale)})"
        return f"{name}.addcmul_({self._print(x)}{self.scaled(scale)})"

    def scaled(self, scale) -> str:
        """``, tensors[, value=number]`` for an addcmul's ``scale``: its Python-number factors
        (sign, ``1/(n - 1)``) go to ``value=``, which costs no tensor operation of its own
        (codegen.fuse)."""
        factors = sp.Mul.make_args(scale)
        number = sp.Mul(*[f for f in factors if not holds_array(f)])
        tensors = self._print(sp.Mul(*[f for f in factors if holds_array(f)]))
        return f", {tensors}" if number == 1 else f", {tensors}, value={self._print(number)}"

    def _print_AddMatMul(self, expr):
        c, a, b = expr.args
        return f"torch.addmm({self._print(c)}, {self._print(a)}, {self._print(b)})"

    def _print_MaxValues(self, expr):
        x, axis = expr.args
        return f"{self.postfix(x)}.amax({int(axis)})"

    # -- ATen's normalisation kernels (``codegen.normalization``) ------------------------------
    def _print_Contiguous(self, expr):
        return f"{self.postfix(expr.args[0])}.contiguous()"

    def _print_LayerNormForward(self, expr):
        x, shape, gamma, beta, eps = (self._print(a) if k != 1 else self.shape(a)
                                      for k, a in enumerate(expr.args))
        return f"torch.native_layer_norm({x}, {shape}, {gamma}, {beta}, {eps})"

    def _print_LayerNormBackward(self, expr):
        dy, x, shape, mu, rstd, gamma, beta = (self._print(a) if k != 2 else self.shape(a)
                                               for k, a in enumerate(expr.args))
        return (f"torch.ops.aten.native_layer_norm_backward({dy}, {x}, {shape}, {mu}, {rstd}, "
                f"{gamma}, {beta}, (True, True, True))")

    def _print_GroupNormForward(self, expr):
        return f"torch.native_group_norm({', '.join(self._print(a) for a in expr.args)})"

    def _print_GroupNormBackward(self, expr):
        return (f"torch.ops.aten.native_group_norm_backward("
                f"{', '.join(self._print(a) for a in expr.args)}, (True, True, True))")

    def _print_MaxWithIndices(self, expr):
        x, axis = expr.args
        return f"{self.postfix(x)}.max({int(axis)})"

    # -- fused library kernels (``codegen.specialize``) ----------------------------------------
    def _print_Softmax(self, expr):
        x, axis = expr.args
        return f"torch.softmax({self._print(x)}, {int(axis)})"

    def _print_LogSoftmax(self, expr):
        x, axis = expr.args
        return f"torch.log_softmax({self._print(x)}, {int(axis)})"

    def _print_SoftmaxAdjoint(self, expr):
        g, p, axis = expr.args
        return f"torch._softmax_backward_data({self._print(g)}, {self._print(p)}, {int(axis)}, dtype)"

    def _print_LogSoftmaxAdjoint(self, expr):
        g, y, axis = expr.args
        return (f"torch._log_softmax_backward_data({self._print(g)}, {self._print(y)}, "
                f"{int(axis)}, dtype)")

    def _print_LogSoftmaxAt(self, expr):
        probs, logits, labels = expr.args
        return f"log_softmax_at({self._print(probs)}, {self._print(logits)}, {self._print(labels)})"


def _output_padding(pad: sp.Expr) -> tuple | None:
    """``(conv, widths)`` where ``pad`` (nested) only appends zeros at the end of a transposed
    convolution's spatial axes, each fewer than that axis's stride or dilation: exactly the
    positions torch's ``output_padding`` adds (no window reaches them, so they are zero), which
    it accepts only below one of the two. None for anything else."""
    widths: dict[int, sp.Expr] = {}
    code = pad
    while isinstance(code, Pad):
        x, axis, before, after, _ = code.args
        if before != 0 or int(axis) in widths or not after.is_Integer:
            return None
        widths[int(axis)] = after
        code = x
    if not isinstance(code, Conv) or int(code.args[4]) != 1:
        return None
    stride, dilation = code.args[2], code.args[3]
    extra = [widths.pop(2 + k, sp.S.Zero) for k in range(len(stride))]
    if widths or any(not (e < s or e < d) for e, s, d in zip(extra, stride, dilation)):
        return None
    return code, sp.Tuple(*extra)
