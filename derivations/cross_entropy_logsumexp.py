"""Cross-entropy through the log-softmax, ``z - m - log(Sum exp(z - m))``, as ``F.cross_entropy``
computes it: unlike the notebook's chunked form (cross_entropy.py, which takes the log of the
probabilities), no probability is formed before the log, so the log-probabilities stay finite
where a softmax probability underflows to 0. Its backward is the same ``(softmax - onehot)/n``."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, exp, log, symbols

from symderive import Builder, Maximum, normal

n, V = symbols("n V", integer=True, positive=True)
loss = symbols("loss")
i, c = Idx("i", n), Idx("c", V)
logits, Y, m, z, s, logprobs = symbols("logits Y m z s logprobs", cls=IndexedBase)

ce = Builder("cross_entropy_logsumexp", sizes={n: 32, V: 27})
ce.input(logits[i, c], normal(1.0))
ce.labels(Y[i], V)
ce[m[i]] = Maximum(logits[i, c], c)
ce[z[i, c]] = logits[i, c] - m[i]
ce[s[i]] = Sum(exp(z[i, c]), c)
ce[logprobs[i, c]] = z[i, c] - log(s[i])
ce[loss] = -Sum(logprobs[i, Y[i]], i) / n
ce.loss(loss)
ce.reference("F.cross_entropy", F.cross_entropy)
ce.latex(logits="z", m="m", z=r"\tilde{z}", s="s", logprobs=r"\ell")
program = ce.build()
