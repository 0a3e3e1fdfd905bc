"""hardtanh: min(max(x, -1), 1).

Example values are random normal, which almost surely miss the kinks; at its upper kink the
derived subgradient is not torch's (the README lists where, as tests/test_activations.py
measures it)."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Max, Min, Piecewise, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("hardtanh", sizes={n: 8, d: 16})
b.input(x[i, j], normal(2.0))
b[y[i, j]] = Min(Max(x[i, j], -1), 1)
b.output(y)
b.reference("F.hardtanh", lambda x: F.hardtanh(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = Piecewise((1, (x[i, j] > -1) & (x[i, j] < 1)), (0, True))*dy[i, j]
