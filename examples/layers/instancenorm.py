"""InstanceNorm in torch's layout ``(N, C, H, W)``: each sample's channel is normalised over its
positions ``(p, q)`` jointly (biased variance, as torch), then a gain and bias per channel
(``F.instance_norm`` with weight and bias). The joint reduction ``Sum_p Sum_q xc = 0`` is derived
from the program as layernorm's single-axis one is; nothing here is special."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, C, H, W = symbols("n C H W", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, c, p, q = Idx("i", n), Idx("c", C), Idx("p", H), Idx("q", W)
x, gamma, beta, mu, xc, xc2, var, rstd, xhat, y = symbols(
    "x gamma beta mu xc xc2 var rstd xhat y", cls=IndexedBase)

inn = Builder("instancenorm", sizes={n: 3, C: 4, H: 5, W: 6}, constants={eps: 1e-5})
inn.input(x[i, c, p, q], normal(1.0))
inn.input(gamma[c], normal(0.1, mean=1.0))
inn.input(beta[c], normal(0.1))
inn[mu[i, c]] = Sum(x[i, c, p, q], p, q) / (H * W)
inn[xc[i, c, p, q]] = x[i, c, p, q] - mu[i, c]
inn[xc2[i, c, p, q]] = xc[i, c, p, q] ** 2
inn[var[i, c]] = Sum(xc2[i, c, p, q], p, q) / (H * W)
inn[rstd[i, c]] = (var[i, c] + eps) ** Rational(-1, 2)
inn[xhat[i, c, p, q]] = xc[i, c, p, q] * rstd[i, c]
inn[y[i, c, p, q]] = gamma[c] * xhat[i, c, p, q] + beta[c]
inn.output(y)
inn.reference("F.instance_norm", lambda x, gamma, beta: F.instance_norm(
    x, weight=gamma, bias=beta, eps=1e-5))
inn.latex(xc=r"\bar{x}", xc2="q", var=r"\sigma^{2}", rstd="r", xhat=r"\hat{x}")
program = inn.build()
