"""Max pooling with kernel 3 and stride 2 (``F.max_pool1d(x, 3, 2)``): a ``Maximum`` over the
strided window ``x[i, c, 2*p + u]``, ``u`` in ``range(3)``, read as a view (``x.unfold(2, 3, 2)``);
its adjoint goes to each window's argmax (torch's convention at ties), a position two windows
share collecting from both."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, symbols

from symderive import Builder, Maximum, normal

n, C, P = symbols("n C P", integer=True, positive=True)
i, c, p, u = Idx("i", n), Idx("c", C), Idx("p", P), Idx("u", 3)
l = Idx("l", 2 * P + 1)
x, y = symbols("x y", cls=IndexedBase)

pool = Builder("max_pool_overlap", sizes={n: 3, C: 2, P: 4})
pool.input(x[i, c, l], normal(1.0))
pool[y[i, c, p]] = Maximum(x[i, c, 2 * p + u], u)
pool.output(y)
pool.reference("F.max_pool1d", lambda x: F.max_pool1d(x, 3, 2))
program = pool.build()
