"""logsumexp over the last axis, stabilised by the row maximum; its backward is the softmax
times the upstream adjoint."""
import torch
from sympy import Idx, IndexedBase, Sum, exp, log, symbols

from symderive import Builder, Maximum, normal

n, V = symbols("n V", integer=True, positive=True)
i, c = Idx("i", n), Idx("c", V)
z, m, y = symbols("z m y", cls=IndexedBase)

lse = Builder("logsumexp", sizes={n: 6, V: 9})
lse.input(z[i, c], normal(1.0))
lse[m[i]] = Maximum(z[i, c], c)
lse[y[i]] = m[i] + log(Sum(exp(z[i, c] - m[i]), c))
lse.output(y)
lse.reference("torch.logsumexp", lambda z: torch.logsumexp(z, 1))
program = lse.build()
