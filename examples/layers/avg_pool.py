"""Average pooling over positions with kernel 2 and stride 2 (``F.avg_pool1d(x, 2, 2)``): output
position ``p`` averages input positions ``2*p`` and ``2*p + 1``. The read ``x[i, c, 2*p + u]``
with ``u`` in ``range(2)`` covers the ``2*P`` positions once each, a flattened index like
makemore's ``embcat[i, E*t + e]``: it lowers to a reshape, and its adjoint to the reshape back."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal

n, C, P = symbols("n C P", integer=True, positive=True)
i, c, p, u = Idx("i", n), Idx("c", C), Idx("p", P), Idx("u", 2)
l = Idx("l", 2 * P)
x, y = symbols("x y", cls=IndexedBase)

pool = Builder("avg_pool", sizes={n: 3, C: 2, P: 4})
pool.input(x[i, c, l], normal(1.0))
pool[y[i, c, p]] = Sum(x[i, c, 2 * p + u], u) / 2
pool.output(y)
pool.reference("F.avg_pool1d", lambda x: F.avg_pool1d(x, 2, 2))
program = pool.build()
