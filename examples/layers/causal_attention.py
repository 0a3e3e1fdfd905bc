"""Causal scaled dot-product attention for one head, the mask written from the indices: query
``t`` sees keys ``s <= t`` through the factor ``Heaviside(t - s, 1)`` (1 where ``s <= t``, else
0), which lowers to a comparison of aranges. The row maximum that stabilises the softmax is taken
over the keys the query sees (the others pushed down by ``big``): a maximum over every key would
let a masked score decide the shift, and at large scores every visible ``exp`` would underflow
to 0 (0/0 in the softmax). The backward is attention's textbook one, the mask inside ``P``."""
import torch.nn.functional as F
from sympy import Heaviside, Idx, IndexedBase, Sum, exp, sqrt, symbols

from symderive import Builder, Maximum, normal

T, E = symbols("T E", integer=True, positive=True)  # positions, head width
big = symbols("big", positive=True)
t, s, e, f = Idx("t", T), Idx("s", T), Idx("e", E), Idx("f", E)
Q, K, Vv, A, m, ex, den, P, O = symbols("Q K V A m ex den P O", cls=IndexedBase)

att = Builder("causal_attention", sizes={T: 6, E: 4}, constants={big: 1e9})
att.input(Q[t, e], normal(1.0))
att.input(K[s, e], normal(1.0))
att.input(Vv[s, f], normal(1.0))
att[A[t, s]] = Sum(Q[t, e] * K[s, e], e) / sqrt(E)
att[m[t]] = Maximum(A[t, s] - big * (1 - Heaviside(t - s, 1)), s)
att[ex[t, s]] = exp(A[t, s] - m[t]) * Heaviside(t - s, 1)
att[den[t]] = Sum(ex[t, s], s)
att[P[t, s]] = ex[t, s] / den[t]
att[O[t, f]] = Sum(P[t, s] * Vv[s, f], s)
att.output(O)
att.reference("F.scaled_dot_product_attention(is_causal=True)", lambda Q, K, V:
              F.scaled_dot_product_attention(Q[None], K[None], V[None], is_causal=True)[0])
program = att.build()
