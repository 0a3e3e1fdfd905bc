"""makemore part 4, exercise 4: the MLP assembled from the batchnorm and cross-entropy layers, so
its backward uses their compact forms; every layer boundary's adjoint is materialised."""
from pathlib import Path

from sympy import Idx, IndexedBase, Sum, symbols, tanh

from symderive import Builder, load, normal

HERE = Path(__file__).parent
n, V, B, E, H = symbols("n V B E H", integer=True, positive=True)  # batch, vocab, block, embd, hidden
loss = symbols("loss")
i, t, e, k, j, c, v = (Idx("i", n), Idx("t", B), Idx("e", E), Idx("k", B * E), Idx("j", H),
                       Idx("c", V), Idx("v", V))
C, Xb, Yb, emb, embcat, W1, b1, hprebn, bngain, bnbias, hpreact, h, W2, b2, logits = symbols(
    "C Xb Yb emb embcat W1 b1 hprebn bngain bnbias hpreact h W2 b2 logits", cls=IndexedBase)

mlp = Builder("makemore_mlp_layers", sizes={n: 32, V: 27, B: 3, E: 10, H: 64},
              adjoints=("emb", "embcat", "h"))
mlp.labels(Xb[i, t], V)
mlp.labels(Yb[i], V)
mlp.input(C[v, e], normal(1.0))
mlp[emb[i, t, e]] = C[Xb[i, t], e]
mlp[embcat[i, E * t + e]] = emb[i, t, e]
mlp.input(W1[k, j], normal(5 / 3 / 30**0.5))
mlp.input(b1[j], normal(0.1))
mlp[hprebn[i, j]] = Sum(embcat[i, k] * W1[k, j], k) + b1[j]
mlp.input(bngain[j], normal(0.1, mean=1.0))
mlp.input(bnbias[j], normal(0.1))
mlp.include(load(HERE / "batchnorm.py"))
mlp[h[i, j]] = tanh(hpreact[i, j])
mlp.input(W2[j, c], normal(0.1))
mlp.input(b2[c], normal(0.1))
mlp[logits[i, c]] = Sum(h[i, j] * W2[j, c], j) + b2[c]
mlp.include(load(HERE / "cross_entropy.py"), Y="Yb")
mlp.loss(loss)
program = mlp.build()
