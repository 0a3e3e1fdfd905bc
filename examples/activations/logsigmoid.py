"""log sigmoid: -softplus(-x), stable.

Example values are random normal, which almost surely miss the kinks (subgradients there
follow torch, see symderive/ops.py)."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, symbols

from symderive import Builder, log_sigmoid, normal, sigmoid

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("logsigmoid", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b[y[i, j]] = log_sigmoid(x[i, j])
b.output(y)
b.reference("F.logsigmoid", lambda x: F.logsigmoid(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = (1 - sigmoid(x[i, j]))*dy[i, j]
