"""A two-layer tanh MLP with a cross-entropy loss, written in one file as a person writes it: no
``adjoints=``. The loss is makemore's cross-entropy, included; ``dlogits`` and ``dpre`` are
materialised by the cost rule (each feeds two matmuls)."""
from pathlib import Path

import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols, tanh

from symderive import Builder, load, normal

HERE = Path(__file__).parent
n, D, H, V = symbols("n D H V", integer=True, positive=True)
loss = symbols("loss")
i, d, j, c = Idx("i", n), Idx("d", D), Idx("j", H), Idx("c", V)
x, Y, W1, b1, pre, hid, W2, b2, logits = symbols("x Y W1 b1 pre hid W2 b2 logits",
                                                 cls=IndexedBase)

mlp = Builder("mlp_ce", sizes={n: 8, D: 5, H: 6, V: 7})
mlp.input(x[i, d], normal(1.0))
mlp.labels(Y[i], V)
mlp.input(W1[d, j], normal(0.4))
mlp.input(b1[j], normal(0.1))
mlp.input(W2[j, c], normal(0.4))
mlp.input(b2[c], normal(0.1))
mlp[pre[i, j]] = Sum(x[i, d] * W1[d, j], d) + b1[j]
mlp[hid[i, j]] = tanh(pre[i, j])
mlp[logits[i, c]] = Sum(hid[i, j] * W2[j, c], j) + b2[c]
mlp.include(load(HERE.parent.parent / "derivations" / "cross_entropy.py"))
mlp.loss(loss)
mlp.reference("F.cross_entropy", lambda x, Y, W1, b1, W2, b2: F.cross_entropy(
    (x @ W1 + b1).tanh() @ W2 + b2, Y))
program = mlp.build()
