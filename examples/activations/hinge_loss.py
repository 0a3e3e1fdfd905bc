"""binary hinge loss: mean max(0, 1 - t*x) for targets t (here any real)."""
import torch.nn.functional as F
from sympy import Heaviside, Idx, IndexedBase, Max, Sum, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("hinge_loss", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b.input(t[i, j], normal(1.0))
b[loss] = Sum(Sum(Max(1 - t[i, j]*x[i, j], 0), i), j) / (n*d)
b.loss(loss)
b.reference("F.relu(1 - t*x).mean()", lambda x, t: F.relu(1 - t*x).mean())
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = -t[i, j]*Heaviside(1 - t[i, j]*x[i, j], 0)/(n*d)
