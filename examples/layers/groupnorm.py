"""GroupNorm in torch's layout: the ``G*Cg`` channels of ``x[i, c, l]`` (``F.group_norm``'s
``(N, C, L)``) split into ``G`` groups of ``Cg`` channels, here as axes ``x[i, g, h, l]``; each
sample's group is normalised over its channels and positions jointly (biased variance, as torch),
then a gain and bias per channel. The joint reduction ``Sum_h Sum_l xc = 0`` is derived from the
program as batchnorm's single-axis one is; nothing here is special."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, G, Cg, L = symbols("n G Cg L", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, g, h, l = Idx("i", n), Idx("g", G), Idx("h", Cg), Idx("l", L)
x, gamma, beta, mu, xc, xc2, var, rstd, xhat, y = symbols(
    "x gamma beta mu xc xc2 var rstd xhat y", cls=IndexedBase)

gn = Builder("groupnorm", sizes={n: 4, G: 3, Cg: 2, L: 5}, constants={eps: 1e-5})
gn.input(x[i, g, h, l], normal(1.0))
gn.input(gamma[g, h], normal(0.1, mean=1.0))
gn.input(beta[g, h], normal(0.1))
gn[mu[i, g]] = Sum(x[i, g, h, l], h, l) / (Cg * L)
gn[xc[i, g, h, l]] = x[i, g, h, l] - mu[i, g]
gn[xc2[i, g, h, l]] = xc[i, g, h, l] ** 2
gn[var[i, g]] = Sum(xc2[i, g, h, l], h, l) / (Cg * L)
gn[rstd[i, g]] = (var[i, g] + eps) ** Rational(-1, 2)
gn[xhat[i, g, h, l]] = xc[i, g, h, l] * rstd[i, g]
gn[y[i, g, h, l]] = gamma[g, h] * xhat[i, g, h, l] + beta[g, h]
gn.output(y)


def _group_norm(x, gamma, beta):
    """F.group_norm on the (N, C, L) view of x, C = G*Cg channels in G groups."""
    N, G, Cg, L = x.shape
    flat = F.group_norm(x.reshape(N, G * Cg, L), G, gamma.reshape(-1), beta.reshape(-1), 1e-5)
    return flat.reshape(N, G, Cg, L)


gn.reference("F.group_norm", _group_norm)
gn.latex(xc=r"\bar{x}", xc2="q", var=r"\sigma^{2}", rstd="r", xhat=r"\hat{x}")
program = gn.build()
