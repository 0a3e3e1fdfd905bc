"""Batchnorm over the batch axis with the biased variance (1/n), as torch's F.batch_norm normalises in training."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, H = symbols("n H", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j = Idx("i", n), Idx("j", H)
hprebn, bngain, bnbias, bnmeani, bndiff, bndiff2, bnvar, bnvar_inv, bnraw, hpreact = symbols(
    "hprebn bngain bnbias bnmeani bndiff bndiff2 bnvar bnvar_inv bnraw hpreact", cls=IndexedBase)

layer = Builder("batchnorm_biased", sizes={n: 32, H: 64}, constants={eps: 1e-5})
layer.input(hprebn[i, j], normal(1.0))
layer.input(bngain[j], normal(0.1, mean=1.0))
layer.input(bnbias[j], normal(0.1))
layer[bnmeani[j]] = Sum(hprebn[i, j], i) / n
layer[bndiff[i, j]] = hprebn[i, j] - bnmeani[j]
layer[bndiff2[i, j]] = bndiff[i, j] ** 2
layer[bnvar[j]] = Sum(bndiff2[i, j], i) / n  # biased: no Bessel correction
layer[bnvar_inv[j]] = (bnvar[j] + eps) ** Rational(-1, 2)
layer[bnraw[i, j]] = bndiff[i, j] * bnvar_inv[j]
layer[hpreact[i, j]] = bngain[j] * bnraw[i, j] + bnbias[j]
layer.output(hpreact)
layer.reference("F.batch_norm", lambda x, gain, bias: F.batch_norm(x, None, None, gain, bias, training=True))
layer.closed_form("biased one-liner", lambda v, g: {"hprebn": v["bngain"] * v["bnvar_inv"] * (
    g - g.mean(0) - v["bnraw"] * (g * v["bnraw"]).mean(0))})
layer.latex(hprebn="x", bngain=r"\gamma", bnbias=r"\beta", bnmeani=r"\mu", bndiff=r"\bar{x}",
            bndiff2="q", bnvar=r"\sigma^{2}", bnvar_inv="r", bnraw=r"\hat{x}", hpreact="y")
program = layer.build()
