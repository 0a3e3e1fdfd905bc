"""selu: scale*(max(x, 0) + alpha*(exp(min(x, 0)) - 1)) with torch's constants.

Example values are random normal, which almost surely miss the kinks (subgradients there
follow torch, see symderive/ops.py)."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Max, Min, Piecewise, exp, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")
alpha, scale = symbols("alpha scale")

b = Builder("selu", sizes={n: 8, d: 16}, constants={alpha: 1.6732632423543772, scale: 1.0507009873554805})
b.input(x[i, j], normal(1.0))
b[y[i, j]] = scale*(Max(x[i, j], 0) + alpha*(exp(Min(x[i, j], 0)) - 1))
b.output(y)
b.reference("F.selu", lambda x: F.selu(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = scale*Piecewise((1, x[i, j] > 0), (alpha*exp(x[i, j]), True))*dy[i, j]
