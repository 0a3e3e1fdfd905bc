"""softmin over the feature axis: softmax of -x, with the max shift."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, exp, symbols

from symderive import Builder, Maximum, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("softmin", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b[m[i]] = Maximum(-x[i, j], j)
b[e[i, j]] = exp(-x[i, j] - m[i])
b[s[i]] = Sum(e[i, j], j)
b[y[i, j]] = e[i, j] / s[i]
b.output(y)
b.reference("F.softmin", lambda x: F.softmin(x, dim=1))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
k = Idx("k", d)
TEXTBOOK = -y[i, j]*(dy[i, j] - Sum(dy[i, k]*y[i, k], k))
