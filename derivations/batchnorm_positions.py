"""Batchnorm of a sequence's activations ``x[i, t, j]`` over the batch *and* position axes, as
makemore part 5's fixed BatchNorm1d (``x.var((0, 1))``, Bessel's correction over the ``n*T``
values of each channel): the rules that give batchnorm's compact backward over one axis give it
over two, nothing here is special."""
from sympy import Idx, IndexedBase, Rational, Sum, symbols

from symderive import Builder, normal

n, T, H = symbols("n T H", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, t, j = Idx("i", n), Idx("t", T), Idx("j", H)
x, gamma, beta, mean, xc, xc2, var, rstd, xhat, y = symbols(
    "x gamma beta mean xc xc2 var rstd xhat y", cls=IndexedBase)

layer = Builder("batchnorm_positions", sizes={n: 8, T: 4, H: 16}, constants={eps: 1e-5})
layer.input(x[i, t, j], normal(1.0))
layer.input(gamma[j], normal(0.1, mean=1.0))
layer.input(beta[j], normal(0.1))
layer[mean[j]] = Sum(x[i, t, j], i, t) / (n * T)
layer[xc[i, t, j]] = x[i, t, j] - mean[j]
layer[xc2[i, t, j]] = xc[i, t, j] ** 2
layer[var[j]] = Sum(xc2[i, t, j], i, t) / (n * T - 1)  # Bessel's correction, as x.var((0, 1))
layer[rstd[j]] = (var[j] + eps) ** Rational(-1, 2)
layer[xhat[i, t, j]] = xc[i, t, j] * rstd[j]
layer[y[i, t, j]] = gamma[j] * xhat[i, t, j] + beta[j]
layer.output(y)
layer.reference("part 5's BatchNorm1d forward", lambda x, gamma, beta: gamma * (
    x - x.mean((0, 1))) / (x.var((0, 1), unbiased=True) + 1e-5).sqrt() + beta)
layer.latex(x="x", gamma=r"\gamma", beta=r"\beta", mean=r"\mu", xc=r"\bar{x}", xc2="q",
            var=r"\sigma^{2}", rstd="r", xhat=r"\hat{x}", y="y")
program = layer.build()
