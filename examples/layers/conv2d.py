"""A 2-D convolution in torch's layout, ``y[i, o, p, q] = Sum(w[o, c, u, v]*x[i, c, p + u, q + v],
c, u, v) + b[o]`` (no padding, stride 1): two sliding windows, one per spatial axis. Each window
pairs an output position with a kernel tap, so the forward is one correlation, ``dw`` the
correlation of ``x`` with ``dy``, and ``dx`` the transposed convolution of ``dy`` with ``w``."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal

n, C, O, P, Q, U, V = symbols("n C O P Q U V", integer=True, positive=True)
i, c, o = Idx("i", n), Idx("c", C), Idx("o", O)
p, q, u, v = Idx("p", P), Idx("q", Q), Idx("u", U), Idx("v", V)
r, s = Idx("r", P + U - 1), Idx("s", Q + V - 1)
x, w, b, y = symbols("x w b y", cls=IndexedBase)

conv = Builder("conv2d", sizes={n: 2, C: 3, O: 4, P: 5, Q: 6, U: 3, V: 2})
conv.input(x[i, c, r, s], normal(1.0))
conv.input(w[o, c, u, v], normal(0.3))
conv.input(b[o], normal(0.1))
conv[y[i, o, p, q]] = Sum(w[o, c, u, v] * x[i, c, p + u, q + v], c, u, v) + b[o]
conv.output(y)
conv.reference("F.conv2d", lambda x, w, b: F.conv2d(x, w, b))
program = conv.build()
