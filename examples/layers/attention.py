"""Scaled dot-product attention for one head: ``A = Q K^T/sqrt(E)``, ``P = softmax(A)`` (row
maximum subtracted), ``O = P V``. The textbook backward materialises ``dP = dO V^T`` and
``dA = P*(dP - rowsum(dP*P))``, then ``dQ = dA K/sqrt(E)``, ``dK = dA^T Q/sqrt(E)``."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, exp, sqrt, symbols

from symderive import Builder, Maximum, normal

T, L, E = symbols("T L E", integer=True, positive=True)  # queries, keys, head width
t, s, e, f = Idx("t", T), Idx("s", L), Idx("e", E), Idx("f", E)
Q, K, Vv, A, m, ex, den, P, O = symbols("Q K V A m ex den P O", cls=IndexedBase)

att = Builder("attention", sizes={T: 5, L: 6, E: 4})
att.input(Q[t, e], normal(1.0))
att.input(K[s, e], normal(1.0))
att.input(Vv[s, f], normal(1.0))
att[A[t, s]] = Sum(Q[t, e] * K[s, e], e) / sqrt(E)
att[m[t]] = Maximum(A[t, s], s)
att[ex[t, s]] = exp(A[t, s] - m[t])
att[den[t]] = Sum(ex[t, s], s)
att[P[t, s]] = ex[t, s] / den[t]
att[O[t, f]] = Sum(P[t, s] * Vv[s, f], s)
att.output(O)
att.reference("F.scaled_dot_product_attention",
              lambda Q, K, V: F.scaled_dot_product_attention(Q[None], K[None], V[None])[0])
program = att.build()
