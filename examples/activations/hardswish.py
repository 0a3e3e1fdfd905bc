"""hardswish: x*min(max(x + 3, 0), 6)/6.

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

b = Builder("hardswish", sizes={n: 8, d: 16})
b.input(x[i, j], normal(4.0))
b[y[i, j]] = x[i, j]*Min(Max(x[i, j] + 3, 0), 6)/6
b.output(y)
b.reference("F.hardswish", lambda x: F.hardswish(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = Piecewise((0, x[i, j] < -3), ((2*x[i, j] + 3)/6, x[i, j] < 3), (1, True))*dy[i, j]
