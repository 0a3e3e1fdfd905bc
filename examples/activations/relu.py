"""relu: max(x, 0); relu'(0) = 0 as torch.

Example values are random normal, which almost surely miss the kinks (subgradients there
follow torch, see symderive/ops.py)."""
import torch.nn.functional as F
from sympy import Heaviside, Idx, IndexedBase, Max, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("relu", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b[y[i, j]] = Max(x[i, j], 0)
b.output(y)
b.reference("F.relu", lambda x: F.relu(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = Heaviside(x[i, j], 0)*dy[i, j]
