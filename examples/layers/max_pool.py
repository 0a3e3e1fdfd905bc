"""Max pooling over positions with kernel 2 and stride 2 (``F.max_pool1d(x, 2, 2)``): a
``Maximum`` over the window ``x[i, c, 2*p + u]``, ``u`` in ``range(2)`` (a reshape, as in
``avg_pool.py``); its adjoint goes to each window's argmax, torch's convention at ties."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, symbols

from symderive import Builder, Maximum, normal

n, C, P = symbols("n C P", integer=True, positive=True)
i, c, p, u = Idx("i", n), Idx("c", C), Idx("p", P), Idx("u", 2)
l = Idx("l", 2 * P)
x, y = symbols("x y", cls=IndexedBase)

pool = Builder("max_pool", sizes={n: 3, C: 2, P: 4})
pool.input(x[i, c, l], normal(1.0))
pool[y[i, c, p]] = Maximum(x[i, c, 2 * p + u], u)
pool.output(y)
pool.reference("F.max_pool1d", lambda x: F.max_pool1d(x, 2, 2))
program = pool.build()
