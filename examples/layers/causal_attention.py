"""Causal scaled dot-product attention for one head, the mask written from the indices: query
``t`` sees keys ``s <= t`` through ``Heaviside(t - s, 1)`` (1 where ``s <= t``, else 0), which
lowers to a comparison of aranges. A later key's score is pushed down by ``big`` (``Am``, 1e30), so it
neither sets the row maximum that stabilises the softmax (over every key, a masked score could
set the shift and every visible ``exp`` underflow to 0) nor survives its ``exp`` (multiplying
``exp(A - m)`` by the mask instead overflows to ``inf*0`` where a later score exceeds the visible
maximum by more than the dtype's range). The backward is attention's textbook one."""
import torch.nn.functional as F
from sympy import Heaviside, Idx, IndexedBase, Sum, exp, sqrt, symbols

from symderive import Builder, Maximum, normal

T, E = symbols("T E", integer=True, positive=True)  # positions, head width
big = symbols("big", positive=True)
t, s, e, f = Idx("t", T), Idx("s", T), Idx("e", E), Idx("f", E)
Q, K, Vv, A, Am, m, ex, den, P, O = symbols("Q K V A Am m ex den P O", cls=IndexedBase)

att = Builder("causal_attention", sizes={T: 6, E: 4}, constants={big: 1e30})
att.input(Q[t, e], normal(1.0))
att.input(K[s, e], normal(1.0))
att.input(Vv[s, f], normal(1.0))
att[A[t, s]] = Sum(Q[t, e] * K[s, e], e) / sqrt(E)
att[Am[t, s]] = A[t, s] - big * (1 - Heaviside(t - s, 1))  # a later key's score: far below
att[m[t]] = Maximum(Am[t, s], s)
att[ex[t, s]] = exp(Am[t, s] - m[t])
att[den[t]] = Sum(ex[t, s], s)
att[P[t, s]] = ex[t, s] / den[t]
att[O[t, f]] = Sum(P[t, s] * Vv[s, f], s)
att.output(O)
att.reference("F.scaled_dot_product_attention(is_causal=True)", lambda Q, K, V:
              F.scaled_dot_product_attention(Q[None], K[None], V[None], is_causal=True)[0])
program = att.build()
