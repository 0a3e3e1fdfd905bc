"""LayerNorm at each position of a batch of sequences ``x[i, t, d]`` (a transformer's residual
stream): normalised over the features (biased variance, as torch), then a gain and bias per
feature. layernorm.py's rules over one more free axis; nothing here is special."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, T, D = symbols("n T D", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, t, d = Idx("i", n), Idx("t", T), Idx("d", D)
x, gamma, beta, mu, xc, xc2, var, rstd, xhat, y = symbols(
    "x gamma beta mu xc xc2 var rstd xhat y", cls=IndexedBase)

ln = Builder("layernorm_positions", sizes={n: 3, T: 4, D: 8}, constants={eps: 1e-5})
ln.input(x[i, t, d], normal(1.0))
ln.input(gamma[d], normal(0.1, mean=1.0))
ln.input(beta[d], normal(0.1))
ln[mu[i, t]] = Sum(x[i, t, d], d) / D
ln[xc[i, t, d]] = x[i, t, d] - mu[i, t]
ln[xc2[i, t, d]] = xc[i, t, d] ** 2
ln[var[i, t]] = Sum(xc2[i, t, d], d) / D
ln[rstd[i, t]] = (var[i, t] + eps) ** Rational(-1, 2)
ln[xhat[i, t, d]] = xc[i, t, d] * rstd[i, t]
ln[y[i, t, d]] = gamma[d] * xhat[i, t, d] + beta[d]
ln.output(y)
ln.reference("F.layer_norm", lambda x, gamma, beta: F.layer_norm(x, x.shape[-1:], gamma, beta))
ln.latex(xc=r"\bar{x}", xc2="q", var=r"\sigma^{2}", rstd="r", xhat=r"\hat{x}")
program = ln.build()
