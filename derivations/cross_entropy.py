"""The chunked cross-entropy loss of makemore4.md statements 13-20, from logits and labels."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, exp, log, symbols

from symderive import Builder, Maximum, normal

n, V = symbols("n V", integer=True, positive=True)
loss = symbols("loss")
i, c = Idx("i", n), Idx("c", V)
logits, Y, logit_maxes, norm_logits, counts, counts_sum, counts_sum_inv, probs, logprobs = symbols(
    "logits Y logit_maxes norm_logits counts counts_sum counts_sum_inv probs logprobs",
    cls=IndexedBase)

ce = Builder("cross_entropy", sizes={n: 32, V: 27})
ce.input(logits[i, c], normal(1.0))
ce.labels(Y[i], V)
ce[logit_maxes[i]] = Maximum(logits[i, c], c)
ce[norm_logits[i, c]] = logits[i, c] - logit_maxes[i]  # for numerical stability
ce[counts[i, c]] = exp(norm_logits[i, c])
ce[counts_sum[i]] = Sum(counts[i, c], c)
ce[counts_sum_inv[i]] = counts_sum[i] ** -1
ce[probs[i, c]] = counts[i, c] * counts_sum_inv[i]
ce[logprobs[i, c]] = log(probs[i, c])
ce[loss] = -Sum(logprobs[i, Y[i]], i) / n
ce.loss(loss)
ce.reference("F.cross_entropy", F.cross_entropy)
ce.closed_form("softmax - onehot", lambda v: {"logits": (F.softmax(v["logits"], 1) - F.one_hot(
    v["Y"], v["logits"].shape[1]).to(v["logits"].dtype)) / len(v["logits"])})
ce.latex(logits="z", logit_maxes="m", norm_logits=r"\tilde{z}", counts="e", counts_sum="s",
         counts_sum_inv="r", probs="p", logprobs=r"\ell")
program = ce.build()
