"""An LSTM cell, one step, in torch's gate convention (``torch.nn.LSTMCell``): input, forget, cell
and output gates from one affine map each of ``x`` and ``h``; new cell ``f*c + i*g``, new state
``o*tanh(c')``. No ``adjoints=``: what is materialised is the cost rule's choice."""
import torch
from sympy import Idx, IndexedBase, Sum, symbols, tanh

from symderive import Builder, normal, sigmoid

n, D, H = symbols("n D H", integer=True, positive=True)
i, d, h, k = Idx("i", n), Idx("d", D), Idx("h", H), Idx("k", H)
x, hp, cp, Wi, Wf, Wg, Wo, Ui, Uf, Ug, Uo, bi, bf, bg, bo = symbols(
    "x hp cp Wi Wf Wg Wo Ui Uf Ug Uo bi bf bg bo", cls=IndexedBase)
ai, af, ag, ao, ig, fg, gg, og, cn, hn = symbols("ai af ag ao ig fg gg og cn hn", cls=IndexedBase)

lstm = Builder("lstm", sizes={n: 4, D: 3, H: 5})
lstm.input(x[i, d], normal(1.0))
lstm.input(hp[i, h], normal(1.0))
lstm.input(cp[i, h], normal(1.0))
for W in (Wi, Wf, Wg, Wo):
    lstm.input(W[d, h], normal(0.3))
for U in (Ui, Uf, Ug, Uo):
    lstm.input(U[k, h], normal(0.3))
for bias in (bi, bf, bg, bo):
    lstm.input(bias[h], normal(0.1))
for a, W, U, bias in ((ai, Wi, Ui, bi), (af, Wf, Uf, bf), (ag, Wg, Ug, bg), (ao, Wo, Uo, bo)):
    lstm[a[i, h]] = Sum(x[i, d] * W[d, h], d) + Sum(hp[i, k] * U[k, h], k) + bias[h]
lstm[ig[i, h]] = sigmoid(ai[i, h])
lstm[fg[i, h]] = sigmoid(af[i, h])
lstm[gg[i, h]] = tanh(ag[i, h])
lstm[og[i, h]] = sigmoid(ao[i, h])
lstm[cn[i, h]] = fg[i, h] * cp[i, h] + ig[i, h] * gg[i, h]
lstm[hn[i, h]] = og[i, h] * tanh(cn[i, h])
lstm.output(hn, cn)


def _lstm_cell(x, hp, cp, Wi, Wf, Wg, Wo, Ui, Uf, Ug, Uo, bi, bf, bg, bo):
    """torch's own LSTM cell on the same weights (gate order i, f, g, o), outputs (h', c')."""
    return torch._VF.lstm_cell(x, (hp, cp), torch.cat([Wi, Wf, Wg, Wo], 1).T,
                               torch.cat([Ui, Uf, Ug, Uo], 1).T, torch.cat([bi, bf, bg, bo]),
                               torch.zeros(4 * len(bi), dtype=bi.dtype))


lstm.reference("torch LSTM cell", _lstm_cell)
program = lstm.build()
