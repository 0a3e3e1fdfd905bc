"""relu6 written with Piecewise: 0 below 0, 6 above 6, x between; the boundaries belong to the
constant branches, so the derivative there is 0, as torch's relu6 has it."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Piecewise, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, y, dy = symbols("x y dy", cls=IndexedBase)

b = Builder("relu6_piecewise", sizes={n: 8, d: 16})
b.input(x[i, j], normal(4.0))
b[y[i, j]] = Piecewise((0, x[i, j] <= 0), (6, x[i, j] >= 6), (x[i, j], True))
b.output(y)
b.reference("F.relu6", lambda x: F.relu6(x))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the README's
# table, which counts its ops as it counts the derived gradient's
TEXTBOOK = Piecewise((1, (x[i, j] > 0) & (x[i, j] < 6)), (0, True))*dy[i, j]
