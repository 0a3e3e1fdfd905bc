"""binary cross-entropy with logits: mean softplus(x) - t*x, stable."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal, sigmoid, softplus, uniform

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, y, r, m, e, s = symbols("x t y r m e s", cls=IndexedBase)
loss = symbols("loss")

b = Builder("bce_with_logits", sizes={n: 8, d: 16})
b.input(x[i, j], normal(2.0))
b.input(t[i, j], uniform(0.0, 1.0))
b[loss] = Sum(Sum(softplus(x[i, j]) - t[i, j]*x[i, j], i), j) / (n*d)
b.loss(loss)
b.reference("F.binary_cross_entropy_with_logits",
            lambda x, t: F.binary_cross_entropy_with_logits(x, t))
program = b.build()

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's
TEXTBOOK = (sigmoid(x[i, j]) - t[i, j])/(n*d)
