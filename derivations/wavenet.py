"""makemore part 5's WaveNet: an embedding of ``4*P`` characters (the lecture's block of 8 is
``P = 2``), then three levels that each flatten two consecutive positions, apply a Linear without
bias, a batchnorm and tanh, and a Linear to the classes with makemore's cross-entropy. The first
two batchnorms normalise over the batch and position axes (batchnorm_positions.py, included at
``2*P`` and ``P`` positions); the third sees one position per example, the lecture's squeezed
2-D activations, so it is makemore's batchnorm.py. Every layer boundary's adjoint is
materialised, as in makemore_mlp_layers.py."""
from pathlib import Path

from sympy import Idx, IndexedBase, Sum, symbols, tanh

from symderive import Builder, load, normal

HERE = Path(__file__).parent
n, V, E, H, P = symbols("n V E H P", integer=True, positive=True)  # batch, vocab, embd, hidden
loss = symbols("loss")
i, t, e, u, j, c, v = (Idx("i", n), Idx("t", 4 * P), Idx("e", E), Idx("u", 2), Idx("j", H),
                       Idx("c", V), Idx("v", V))
p, q = Idx("p", 2 * P), Idx("q", P)  # positions after the first and the second level
k1, k2, k3 = Idx("k1", 2 * E), Idx("k2", 2 * H), Idx("k3", P * H)
(C, Xb, Yb, emb, x1, W1, h1, bn1, a1, x2, W2, h2, bn2, a2, x3, W3, h3, bn3, a3, W4, b4,
 logits) = symbols("C Xb Yb emb x1 W1 h1 bn1 a1 x2 W2 h2 bn2 a2 x3 W3 h3 bn3 a3 W4 b4 logits",
                   cls=IndexedBase)
gains = symbols("g1 g2 g3", cls=IndexedBase)
biases = symbols("beta1 beta2 beta3", cls=IndexedBase)

net = Builder("wavenet", sizes={n: 8, V: 27, E: 6, H: 10, P: 2}, adjoints=("emb",))
net.labels(Xb[i, t], V)
net.labels(Yb[i], V)
net.input(C[v, e], normal(1.0))
net[emb[i, t, e]] = C[Xb[i, t], e]
for level, W, fan_in in ((1, W1, 2 * 6), (2, W2, 2 * 10), (3, W3, 2 * 10)):
    net.input(W[(k1, k2, k3)[level - 1], j], normal(fan_in ** -0.5))
    net.input(gains[level - 1][j], normal(0.1, mean=1.0))
    net.input(biases[level - 1][j], normal(0.1))
# level 1: positions 2*p and 2*p + 1 side by side, (n, 4P, E) -> (n, 2P, 2E)
net[x1[i, p, E * u + e]] = emb[i, 2 * p + u, e]
net[h1[i, p, j]] = Sum(x1[i, p, k1] * W1[k1, j], k1)
net.include(load(HERE / "batchnorm_positions.py"), sizes={"T": 2 * P}, prefix="bn1_", x="h1",
            gamma="g1", beta="beta1", y="bn1")
net[a1[i, p, j]] = tanh(bn1[i, p, j])
# level 2: (n, 2P, H) -> (n, P, 2H)
net[x2[i, q, H * u + j]] = a1[i, 2 * q + u, j]
net[h2[i, q, j]] = Sum(x2[i, q, k2] * W2[k2, j], k2)
net.include(load(HERE / "batchnorm_positions.py"), sizes={"T": P}, prefix="bn2_", x="h2",
            gamma="g2", beta="beta2", y="bn2")
net[a2[i, q, j]] = tanh(bn2[i, q, j])
# level 3: the last P positions side by side, (n, P, H) -> (n, P*H): the lecture's pair for P = 2
net[x3[i, H * q + j]] = a2[i, q, j]
net[h3[i, j]] = Sum(x3[i, k3] * W3[k3, j], k3)
net.include(load(HERE / "batchnorm.py"), prefix="bn3_", hprebn="h3", bngain="g3",
            bnbias="beta3", hpreact="bn3")
net[a3[i, j]] = tanh(bn3[i, j])
net.input(W4[j, c], normal(0.1 / 10 ** 0.5))
net.input(b4[c], normal(0.1))
net[logits[i, c]] = Sum(a3[i, j] * W4[j, c], j) + b4[c]
net.include(load(HERE / "cross_entropy.py"), prefix="ce_", logits="logits", Y="Yb", loss="loss")
net.loss(loss)
program = net.build()
