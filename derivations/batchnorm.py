"""Batchnorm over the batch axis with Bessel's correction: makemore4.md statements 4-10."""
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, H = symbols("n H", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j = Idx("i", n), Idx("j", H)
hprebn, bngain, bnbias, bnmeani, bndiff, bndiff2, bnvar, bnvar_inv, bnraw, hpreact = symbols(
    "hprebn bngain bnbias bnmeani bndiff bndiff2 bnvar bnvar_inv bnraw hpreact", cls=IndexedBase)

layer = Builder("batchnorm", sizes={n: 32, H: 64}, constants={eps: 1e-5})
layer.input(hprebn[i, j], normal(1.0))
layer.input(bngain[j], normal(0.1, mean=1.0))
layer.input(bnbias[j], normal(0.1))
layer[bnmeani[j]] = Sum(hprebn[i, j], i) / n
layer[bndiff[i, j]] = hprebn[i, j] - bnmeani[j]
layer[bndiff2[i, j]] = bndiff[i, j] ** 2
layer[bnvar[j]] = Sum(bndiff2[i, j], i) / (n - 1)  # Bessel's correction
layer[bnvar_inv[j]] = (bnvar[j] + eps) ** Rational(-1, 2)
layer[bnraw[i, j]] = bndiff[i, j] * bnvar_inv[j]
layer[hpreact[i, j]] = bngain[j] * bnraw[i, j] + bnbias[j]
layer.output(hpreact)
layer.reference("hand-written unbiased forward", lambda x, gain, bias: gain * (x - x.mean(0)) / (
    x.var(0, unbiased=True) + 1e-5).sqrt() + bias)  # F.batch_norm would use the biased variance
layer.closed_form("makemore's one-liner", lambda v, g: {"hprebn": v["bngain"] * v["bnvar_inv"] / len(g) * (
    len(g) * g - g.sum(0) - len(g) / (len(g) - 1) * v["bnraw"] * (g * v["bnraw"]).sum(0))})
layer.latex(hprebn="x", bngain=r"\gamma", bnbias=r"\beta", bnmeani=r"\mu", bndiff=r"\bar{x}",
            bndiff2="q", bnvar=r"\sigma^{2}", bnvar_inv="r", bnraw=r"\hat{x}", hpreact="y")
program = layer.build()
