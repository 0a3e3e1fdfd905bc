"""A transformer block's MLP at each position of a batch of sequences: a Linear to ``M`` units, the exact GELU
``u*(1 + erf(u/sqrt(2)))/2`` (torch's default), and a Linear back to ``D`` features."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, erf, sqrt, symbols

from symderive import Builder, normal

n, T, D, M = symbols("n T D M", integer=True, positive=True)
i, t, d, m, f = Idx("i", n), Idx("t", T), Idx("d", D), Idx("m", M), Idx("f", D)
x, W1, b1, u, g, W2, b2, y = symbols("x W1 b1 u g W2 b2 y", cls=IndexedBase)

mlp = Builder("gelu_mlp", sizes={n: 3, T: 2, D: 4, M: 8})
mlp.input(x[i, t, d], normal(1.0))
mlp.input(W1[d, m], normal(0.5))
mlp.input(b1[m], normal(0.1))
mlp.input(W2[m, f], normal(0.35))
mlp.input(b2[f], normal(0.1))
mlp[u[i, t, m]] = Sum(x[i, t, d] * W1[d, m], d) + b1[m]
mlp[g[i, t, m]] = u[i, t, m] * (1 + erf(u[i, t, m] / sqrt(2))) / 2
mlp[y[i, t, f]] = Sum(g[i, t, m] * W2[m, f], m) + b2[f]
mlp.output(y)
mlp.reference("F.gelu", lambda x, W1, b1, W2, b2: F.gelu(x @ W1 + b1) @ W2 + b2)
mlp.latex(x="x", W1="W^{1}", b1="b^{1}", u="u", g="g", W2="W^{2}", b2="b^{2}", y="y")
program = mlp.build()
