"""hardtanh written with Piecewise: -1 below -1, 1 above 1, x between.

The boundaries belong to the constant branches (x <= -1, x >= 1), so the derivative there is 0,
as torch's hardtanh backward has it."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Piecewise, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, y, dy = symbols("x y dy", cls=IndexedBase)

b = Builder("hardtanh_piecewise", sizes={n: 8, d: 16})
b.input(x[i, j], normal(2.0))
b[y[i, j]] = Piecewise((-1, x[i, j] <= -1), (1, x[i, j] >= 1), (x[i, j], True))
b.output(y)
b.reference("F.hardtanh", lambda x: F.hardtanh(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = Piecewise((1, (x[i, j] > -1) & (x[i, j] < 1)), (0, True))*dy[i, j]
