"""huber loss (delta) written with Piecewise: r**2/2 inside |r| < delta, delta*(|r| - delta/2)
outside, the mean (torch puts |r| = delta in the linear branch, so its second derivative is 0
there)."""
import torch.nn.functional as F
from sympy import Abs, Idx, IndexedBase, Max, Min, Piecewise, Sum, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, r, e = symbols("x t r e", cls=IndexedBase)
loss = symbols("loss")
delta = symbols("delta", positive=True)  # torch requires delta > 0; the case split uses it

b = Builder("huber_piecewise", sizes={n: 8, d: 16}, constants={delta: 1.0})
b.input(x[i, j], normal(1.0))
b.input(t[i, j], normal(1.0))
b[r[i, j]] = x[i, j] - t[i, j]
b[e[i, j]] = Piecewise((r[i, j]**2 / 2, Abs(r[i, j]) < delta),
                       (delta*(Abs(r[i, j]) - delta/2), True))
b[loss] = Sum(Sum(e[i, j], i), j) / (n*d)
b.loss(loss)
b.reference("F.huber_loss", lambda x, t: F.huber_loss(x, t, delta=1.0))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = Max(Min(r[i, j], delta), -delta)/(n*d)
