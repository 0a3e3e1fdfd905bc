"""log_softmax over the last axis, stabilised by the row maximum: ``y = z - m - log(sum exp(z - m))``.
The textbook backward is ``dz = dy - softmax(z)*sum(dy)``."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, exp, log, symbols

from symderive import Builder, Maximum, normal

n, V = symbols("n V", integer=True, positive=True)
i, c = Idx("i", n), Idx("c", V)
z, m, s, y = symbols("z m s y", cls=IndexedBase)

ls = Builder("log_softmax", sizes={n: 6, V: 9})
ls.input(z[i, c], normal(1.0))
ls[m[i]] = Maximum(z[i, c], c)
ls[s[i]] = Sum(exp(z[i, c] - m[i]), c)
ls[y[i, c]] = z[i, c] - m[i] - log(s[i])
ls.output(y)
ls.reference("F.log_softmax", lambda z: F.log_softmax(z, 1))
program = ls.build()
