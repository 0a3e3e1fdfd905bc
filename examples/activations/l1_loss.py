"""l1 loss: mean |x - t|."""
import torch.nn.functional as F
from sympy import Abs, Idx, IndexedBase, Sum, sign, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("l1_loss", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b.input(t[i, j], normal(1.0))
b[loss] = Sum(Sum(Abs(x[i, j] - t[i, j]), i), j) / (n*d)
b.loss(loss)
b.reference("F.l1_loss", lambda x, t: F.l1_loss(x, t))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = sign(x[i, j] - t[i, j])/(n*d)
