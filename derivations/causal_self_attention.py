"""Multi-head causal self-attention over a batch of ``n`` sequences of ``T`` positions, as a
GPT block applies it to its residual stream ``x[i, t, d]``: per head ``h`` the queries, keys
and values are projections of the positions, query ``t`` sees keys ``s <= t`` through
``Heaviside(t - s, 1)``, and the heads' outputs are projected back with a bias. A later key's
score is pushed down by ``big`` (``Am``; 1e30, below any score float32 holds), so it neither sets the softmax's shift nor survives
its ``exp``: multiplying ``exp(A - m)`` by the mask instead would overflow to ``inf*0`` where a
later key's score exceeds the visible maximum by more than the dtype's range (check's stress
rows found it). Its backward is attention's textbook one per head."""
import torch
import torch.nn.functional as F
from sympy import Heaviside, Idx, IndexedBase, Sum, exp, sqrt, symbols

from symderive import Builder, Maximum, normal

n, T, D, NH, HE = symbols("n T D NH HE", integer=True, positive=True)  # NH heads of width HE
big = symbols("big", positive=True)
i, t, s = Idx("i", n), Idx("t", T), Idx("s", T)
d, f, h, e = Idx("d", D), Idx("f", D), Idx("h", NH), Idx("e", HE)
x, Wq, Wk, Wv, Wo, bo, q, k, v, A, Am, m, ex, den, P, O, y = symbols(
    "x Wq Wk Wv Wo bo q k v A Am m ex den P O y", cls=IndexedBase)

att = Builder("causal_self_attention", sizes={n: 2, T: 5, D: 6, NH: 2, HE: 3},
              constants={big: 1e30})
att.input(x[i, t, d], normal(1.0))
for W in (Wq, Wk, Wv):
    att.input(W[d, h, e], normal(0.4))
att.input(Wo[h, e, f], normal(0.4))
att.input(bo[f], normal(0.1))
att[q[i, h, t, e]] = Sum(x[i, t, d] * Wq[d, h, e], d)
att[k[i, h, s, e]] = Sum(x[i, s, d] * Wk[d, h, e], d)
att[v[i, h, s, e]] = Sum(x[i, s, d] * Wv[d, h, e], d)
att[A[i, h, t, s]] = Sum(q[i, h, t, e] * k[i, h, s, e], e) / sqrt(HE)
att[Am[i, h, t, s]] = A[i, h, t, s] - big * (1 - Heaviside(t - s, 1))  # a later key: far below
att[m[i, h, t]] = Maximum(Am[i, h, t, s], s)
att[ex[i, h, t, s]] = exp(Am[i, h, t, s] - m[i, h, t])
att[den[i, h, t]] = Sum(ex[i, h, t, s], s)
att[P[i, h, t, s]] = ex[i, h, t, s] / den[i, h, t]
att[O[i, h, t, e]] = Sum(P[i, h, t, s] * v[i, h, s, e], s)
att[y[i, t, f]] = Sum(O[i, h, t, e] * Wo[h, e, f], h, e) + bo[f]
att.output(y)


def _reference(x, Wq, Wk, Wv, Wo, bo):
    """The same block with F.scaled_dot_product_attention(is_causal=True), the heads in torch's
    (batch, head, position, width) layout."""
    q, k, v = (torch.einsum("itd,dhe->ihte", x, W) for W in (Wq, Wk, Wv))
    O = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return torch.einsum("ihte,hef->itf", O, Wo) + bo


att.reference("F.scaled_dot_product_attention(is_causal=True)", _reference)
att.latex(x="x", Wq="W^{q}", Wk="W^{k}", Wv="W^{v}", Wo="W^{o}", bo="b^{o}", A="S", Am=r"\tilde{S}", m="m",
          ex="e", den="z", P="P", O="O", y="y")
program = att.build()
