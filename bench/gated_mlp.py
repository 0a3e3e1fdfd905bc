"""A gated MLP block (SwiGLU-style, silu written with exp), derived with no ``adjoints=``: the
emitted torch backward against torch autograd of the same forward.

    out[i, o] = Sum(a[i, h]*silu(b[i, h])*U[h, o], h)
    a[i, h] = Sum(x[i, d]*W[d, h], d),  b[i, h] = Sum(x[i, d]*V[d, h], d)

Before automatic materialisation the compact backward was one einsum over 4 to 7 arrays per
gradient (170x autograd at n = 4096). The module is derived and emitted when the case runs.
"""
from __future__ import annotations

import torch
from sympy import Idx, IndexedBase, Sum, exp, symbols

from symderive import Builder, normal
from symderive.api import emit
from symderive.verify.check import load_module

from .timing import Row, compare

n, D, H, O = symbols("n D H O", integer=True, positive=True)
i, d, h, o = Idx("i", n), Idx("d", D), Idx("h", H), Idx("o", O)
x, W, V, U, a, b, out = symbols("x W V U a b out", cls=IndexedBase)


def gated_mlp():
    """The block as a person writes it: no ``adjoints=``, silu(b) = b/(1 + exp(-b))."""
    layer = Builder("gated_mlp", sizes={n: 8, D: 5, H: 7, O: 5})
    layer.input(x[i, d], normal(1.0))
    layer.input(W[d, h], normal(0.3))
    layer.input(V[d, h], normal(0.3))
    layer.input(U[h, o], normal(0.3))
    layer[a[i, h]] = Sum(x[i, d] * W[d, h], d)
    layer[b[i, h]] = Sum(x[i, d] * V[d, h], d)
    layer[out[i, o]] = Sum(a[i, h] * b[i, h] / (1 + exp(-b[i, h])) * U[h, o], h)
    layer.output(out)
    return layer.build()


def backward_rows(rows: int, width: int, hidden: int, repeat: int) -> list[Row]:
    module = load_module(emit(gated_mlp(), "torch").source, "gated_mlp_torch")
    g = torch.Generator().manual_seed(0)
    shapes = {"x": (rows, width), "W": (width, hidden), "V": (width, hidden), "U": (hidden, width)}
    inputs = {k: torch.randn(*s, generator=g) / (s[0] ** 0.5 if k != "x" else 1.0)
              for k, s in shapes.items()}
    dout = torch.randn(rows, width, generator=g)
    values = module.forward(**inputs)

    leaves = [t.clone().requires_grad_() for t in inputs.values()]
    lx, lW, lV, lU = leaves
    la, lb = lx @ lW, lx @ lV
    lout = (la * lb / (1 + torch.exp(-lb))) @ lU  # the same forward, as autograd records it

    def generated():
        return module.backward(values, dout)

    def autograd():
        return torch.autograd.grad(lout, leaves, dout, retain_graph=True)

    got = generated()
    for name, reference in zip(shapes, autograd()):
        error = ((got[name] - reference).abs().max() / reference.abs().max()).item()
        assert error < 1e-4, (name, error)
    return compare("gated MLP backward torch", f"n={rows} d={width} h={hidden}", "float32",
                   {"autograd": autograd}, generated, repeat)


def cases(quick: bool, repeat: int) -> list:
    size = (256, 64, 128) if quick else (4096, 256, 512)
    return [(f"gated MLP {size}", lambda: backward_rows(*size, repeat))]
