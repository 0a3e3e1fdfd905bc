"""Average pooling with kernel 3 and stride 2 (``F.avg_pool1d(x, 3, 2)``): output position ``p``
averages input positions ``2*p``, ``2*p + 1`` and ``2*p + 2``, so neighbouring windows share a
position. The read ``x[i, c, 2*p + u]``, ``u`` in ``range(3)``, is a strided window: it lowers to a
view (``x.unfold(2, 3, 2)``), and its adjoint adds each window back along the axis, the shared
positions twice."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal

n, C, P = symbols("n C P", integer=True, positive=True)
i, c, p, u = Idx("i", n), Idx("c", C), Idx("p", P), Idx("u", 3)
l = Idx("l", 2 * P + 1)
x, y = symbols("x y", cls=IndexedBase)

pool = Builder("avg_pool_overlap", sizes={n: 3, C: 2, P: 4})
pool.input(x[i, c, l], normal(1.0))
pool[y[i, c, p]] = Sum(x[i, c, 2 * p + u], u) / 3
pool.output(y)
pool.reference("F.avg_pool1d", lambda x: F.avg_pool1d(x, 3, 2))
program = pool.build()
