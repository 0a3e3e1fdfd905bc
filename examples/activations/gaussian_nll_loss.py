"""gaussian negative log-likelihood: (log v + (x - t)**2/v)/2, the mean, for a variance v > 0
(inside torch's clamp at eps)."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, log, symbols

from symderive import Builder, normal, uniform

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, r = symbols("x t r", cls=IndexedBase)
v = IndexedBase("v", positive=True)  # a variance: the log and the division need v > 0
loss = symbols("loss")

b = Builder("gaussian_nll_loss", sizes={n: 8, d: 16})
b.input(x[i, j], normal(1.0))
b.input(t[i, j], normal(1.0))
b.input(v[i, j], uniform(0.5, 2.0))
b[loss] = Sum(Sum(log(v[i, j]) + (x[i, j] - t[i, j])**2 / v[i, j], i), j) / (2*n*d)
b.loss(loss)
b.reference("F.gaussian_nll_loss", lambda x, t, v: F.gaussian_nll_loss(x, t, v))
program = b.build()

# the textbook gradient dL/dx as a plain expression, for the README's table, which counts its
# ops as it counts the derived gradient's
TEXTBOOK = (x[i, j] - t[i, j])/(v[i, j]*n*d)
