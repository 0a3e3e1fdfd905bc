"""A GRU cell, one step, in torch's gate convention (``torch.nn.GRUCell``): reset and update gates
``r, z``, candidate ``g = tanh(x Wn + bn + r*(h Un + cn))``, new state ``(1 - z)*g + z*h``. Written
as a person writes it, with no ``adjoints=``: the gate pre-activations' adjoints are materialised
because each feeds several matmuls (the cost rule), not because this file asks."""
import torch
from sympy import Idx, IndexedBase, Sum, symbols, tanh

from symderive import Builder, normal, sigmoid

n, D, H = symbols("n D H", integer=True, positive=True)
i, d, h, k = Idx("i", n), Idx("d", D), Idx("h", H), Idx("k", H)
x, hp, Wr, Wz, Wn, Ur, Uz, Un, br, bz, bn, cn = symbols(
    "x hp Wr Wz Wn Ur Uz Un br bz bn cn", cls=IndexedBase)
ar, az, r, z, c, an, g, hn = symbols("ar az r z c an g hn", cls=IndexedBase)

gru = Builder("gru", sizes={n: 4, D: 3, H: 5})
gru.input(x[i, d], normal(1.0))
gru.input(hp[i, h], normal(1.0))
for W in (Wr, Wz, Wn):
    gru.input(W[d, h], normal(0.3))
for U in (Ur, Uz, Un):
    gru.input(U[k, h], normal(0.3))
for bias in (br, bz, bn, cn):
    gru.input(bias[h], normal(0.1))
gru[ar[i, h]] = Sum(x[i, d] * Wr[d, h], d) + Sum(hp[i, k] * Ur[k, h], k) + br[h]
gru[az[i, h]] = Sum(x[i, d] * Wz[d, h], d) + Sum(hp[i, k] * Uz[k, h], k) + bz[h]
gru[r[i, h]] = sigmoid(ar[i, h])
gru[z[i, h]] = sigmoid(az[i, h])
gru[c[i, h]] = Sum(hp[i, k] * Un[k, h], k) + cn[h]
gru[an[i, h]] = Sum(x[i, d] * Wn[d, h], d) + bn[h] + r[i, h] * c[i, h]
gru[g[i, h]] = tanh(an[i, h])
gru[hn[i, h]] = (1 - z[i, h]) * g[i, h] + z[i, h] * hp[i, h]
gru.output(hn)


def _gru_cell(x, hp, Wr, Wz, Wn, Ur, Uz, Un, br, bz, bn, cn):
    """torch's own GRU cell on the same weights (its gate order r, z, n; its hidden bias on n
    inside the reset product)."""
    zero = torch.zeros_like(br)
    return torch._VF.gru_cell(x, hp, torch.cat([Wr, Wz, Wn], 1).T, torch.cat([Ur, Uz, Un], 1).T,
                              torch.cat([br, bz, bn]), torch.cat([zero, zero, cn]))


gru.reference("torch GRU cell", _gru_cell)
program = gru.build()
