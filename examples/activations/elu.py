"""elu: max(x, 0) + alpha*(exp(min(x, 0)) - 1), overflow-free for large x.

Example values are random normal, which almost surely miss the kinks (subgradients there
follow torch, see symderive/ops.py)."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Max, Min, Piecewise, exp, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")
alpha = symbols("alpha")

b = Builder("elu", sizes={n: 8, d: 16}, constants={alpha: 1.0})
b.input(x[i, j], normal(1.0))
b[y[i, j]] = Max(x[i, j], 0) + alpha*(exp(Min(x[i, j], 0)) - 1)
b.output(y)
b.reference("F.elu", lambda x: F.elu(x, 1.0))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = Piecewise((1, x[i, j] > 0), (alpha*exp(x[i, j]), True))*dy[i, j]
