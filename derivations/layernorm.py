"""LayerNorm: normalise each row over the feature axis (biased variance, as torch), then gain and
bias per feature. The same rules as batchnorm's give its compact backward; nothing here is special."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j = Idx("i", n), Idx("j", d)
x, gamma, beta, mu, xc, xc2, var, rstd, xhat, y = symbols(
    "x gamma beta mu xc xc2 var rstd xhat y", cls=IndexedBase)

ln = Builder("layernorm", sizes={n: 32, d: 64}, constants={eps: 1e-5})
ln.input(x[i, j], normal(1.0))
ln.input(gamma[j], normal(0.1, mean=1.0))
ln.input(beta[j], normal(0.1))
ln[mu[i]] = Sum(x[i, j], j) / d
ln[xc[i, j]] = x[i, j] - mu[i]
ln[xc2[i, j]] = xc[i, j] ** 2
ln[var[i]] = Sum(xc2[i, j], j) / d
ln[rstd[i]] = (var[i] + eps) ** Rational(-1, 2)
ln[xhat[i, j]] = xc[i, j] * rstd[i]
ln[y[i, j]] = gamma[j] * xhat[i, j] + beta[j]
ln.output(y)
ln.reference("F.layer_norm", lambda x, gamma, beta: F.layer_norm(x, x.shape[1:], gamma, beta))
ln.latex(xc=r"\bar{x}", xc2="q", var=r"\sigma^{2}", rstd="r")
program = ln.build()
