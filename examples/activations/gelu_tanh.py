"""gelu, tanh approximation: x/2*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3))).

Example values are random normal, which almost surely miss the kinks (subgradients there
follow torch, see symderive/ops.py)."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, pi, sqrt, symbols, tanh

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")
c = symbols("c")

b = Builder("gelu_tanh", sizes={n: 8, d: 16}, constants={c: 0.044715})
b.input(x[i, j], normal(1.0))
b[y[i, j]] = x[i, j]*(1 + tanh(sqrt(2/pi)*(x[i, j] + c*x[i, j]**3)))/2
b.output(y)
b.reference("F.gelu tanh", lambda x: F.gelu(x, approximate='tanh'))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
dy = IndexedBase("dy")
TEXTBOOK = ((1 + tanh(sqrt(2/pi)*(x[i, j] + c*x[i, j]**3)))/2
            + x[i, j]*(1 - tanh(sqrt(2/pi)*(x[i, j] + c*x[i, j]**3))**2)*sqrt(2/pi)
            * (1 + 3*c*x[i, j]**2)/2)*dy[i, j]
