"""smooth l1 loss (beta): huber's form divided by beta, the mean."""
import torch.nn.functional as F
from sympy import Abs, Idx, IndexedBase, Max, Min, Sum, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")
beta = symbols("beta", positive=True)  # the division by beta needs beta > 0

b = Builder("smooth_l1_loss", sizes={n: 8, d: 16}, constants={beta: 0.5})
b.input(x[i, j], normal(1.0))
b.input(t[i, j], normal(1.0))
b[r[i, j]] = x[i, j] - t[i, j]
b[m[i, j]] = Min(Abs(r[i, j]), beta)
b[loss] = Sum(Sum((m[i, j]**2 / 2 + beta*(Abs(r[i, j]) - m[i, j])) / beta, i), j) / (n*d)
b.loss(loss)
b.reference("F.smooth_l1_loss", lambda x, t: F.smooth_l1_loss(x, t, beta=0.5))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = Max(Min(r[i, j]/beta, 1), -1)/(n*d)
