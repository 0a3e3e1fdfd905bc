"""KL divergence as F.kl_div(logq, p, reduction='batchmean'): sum p*(log p - logq)/n."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, log, symbols

from symderive import Builder, normal, uniform

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("kl_div", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b.input(t[i, j], uniform(0.1, 1.0))
b[loss] = Sum(Sum(t[i, j]*(log(t[i, j]) - x[i, j]), i), j) / n
b.loss(loss)
b.reference("F.kl_div", lambda x, t: F.kl_div(x, t, reduction="batchmean"))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = -t[i, j]/n
