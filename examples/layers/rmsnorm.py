"""RMSNorm over the feature axis (``F.rms_norm``): ``y = gamma*x/sqrt(mean(x**2) + eps)``."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, d = symbols("n d", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j = Idx("i", n), Idx("j", d)
x, gamma, ms, rstd, y = symbols("x gamma ms rstd y", cls=IndexedBase)

rms = Builder("rmsnorm", sizes={n: 8, d: 16}, constants={eps: 1e-5})
rms.input(x[i, j], normal(1.0))
rms.input(gamma[j], normal(0.1, mean=1.0))
rms[ms[i]] = Sum(x[i, j] ** 2, j) / d
rms[rstd[i]] = (ms[i] + eps) ** Rational(-1, 2)
rms[y[i, j]] = gamma[j] * x[i, j] * rstd[i]
rms.output(y)
rms.reference("F.rms_norm", lambda x, gamma: F.rms_norm(x, x.shape[1:], gamma, 1e-5))
program = rms.build()
