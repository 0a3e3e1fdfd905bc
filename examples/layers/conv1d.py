"""A 1-D convolution in torch's layout: ``y[i, o, p] = Sum(w[o, c, u]*x[i, c, p + u], c, u) + b[o]``
(no padding, stride 1), so the input is ``L = P + U - 1`` long. The read ``x[i, c, p + u]`` is a
sliding window; its adjoint scatters back into the positions the window read."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal

n, C, O, P, U = symbols("n C O P U", integer=True, positive=True)
i, c, o, p, u = Idx("i", n), Idx("c", C), Idx("o", O), Idx("p", P), Idx("u", U)
l = Idx("l", P + U - 1)
x, w, b, y = symbols("x w b y", cls=IndexedBase)

conv = Builder("conv1d", sizes={n: 4, C: 3, O: 5, P: 7, U: 3})
conv.input(x[i, c, l], normal(1.0))
conv.input(w[o, c, u], normal(0.3))
conv.input(b[o], normal(0.1))
conv[y[i, o, p]] = Sum(w[o, c, u] * x[i, c, p + u], c, u) + b[o]
conv.output(y)
conv.reference("F.conv1d", lambda x, w, b: F.conv1d(x, w, b))
program = conv.build()
