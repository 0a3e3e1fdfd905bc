"""A 1-D convolution with stride 2 and dilation 2 (``F.conv1d(x, w, b, stride=2, dilation=2)``):
``y[i, o, p] = Sum(w[o, c, u]*x[i, c, 2*p + 2*u], c, u) + b[o]``. The window's coefficients are
the stride (on the output position) and the dilation (on the kernel tap); the input is as long
as the windows reach, ``2*(P - 1) + 2*(U - 1) + 1``, plus one position no window reads."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal

n, C, O, P, U = symbols("n C O P U", integer=True, positive=True)
i, c, o, p, u = Idx("i", n), Idx("c", C), Idx("o", O), Idx("p", P), Idx("u", U)
l = Idx("l", 2 * P + 2 * U - 2)
x, w, b, y = symbols("x w b y", cls=IndexedBase)

conv = Builder("conv1d_strided", sizes={n: 3, C: 3, O: 4, P: 5, U: 3})
conv.input(x[i, c, l], normal(1.0))
conv.input(w[o, c, u], normal(0.3))
conv.input(b[o], normal(0.1))
conv[y[i, o, p]] = Sum(w[o, c, u] * x[i, c, 2 * p + 2 * u], c, u) + b[o]
conv.output(y)
conv.reference("F.conv1d", lambda x, w, b: F.conv1d(x, w, b, stride=2, dilation=2))
program = conv.build()
