"""makemore part 4, exercise 1: the MLP's chunked forward (makemore4.md section 3), every adjoint."""
from sympy import Idx, IndexedBase, Rational, Sum, exp, log, symbols, tanh

from symderive import Builder, Maximum, normal

n, V, B, E, H = symbols("n V B E H", integer=True, positive=True)  # batch, vocab, block, embd, hidden
eps, loss = symbols("eps loss")
i, t, e, k, j, c, v = (Idx("i", n), Idx("t", B), Idx("e", E), Idx("k", B * E), Idx("j", H),
                       Idx("c", V), Idx("v", V))
(C, Xb, Yb, emb, embcat, W1, b1, hprebn, bngain, bnbias, bnmeani, bndiff, bndiff2, bnvar, bnvar_inv, bnraw,
 hpreact, h, W2, b2, logits, logit_maxes, norm_logits, counts, counts_sum, counts_sum_inv, probs,
 logprobs) = symbols("C Xb Yb emb embcat W1 b1 hprebn bngain bnbias bnmeani bndiff bndiff2 bnvar bnvar_inv "
                     "bnraw hpreact h W2 b2 logits logit_maxes norm_logits counts counts_sum counts_sum_inv "
                     "probs logprobs", cls=IndexedBase)

mlp = Builder("makemore_mlp", sizes={n: 32, V: 27, B: 3, E: 10, H: 64}, constants={eps: 1e-5},
              adjoints="all")  # exercise 1: every adjoint, one statement per dependency
mlp.labels(Xb[i, t], V)
mlp.labels(Yb[i], V)
mlp.input(C[v, e], normal(1.0))
mlp[emb[i, t, e]] = C[Xb[i, t], e]
mlp[embcat[i, E * t + e]] = emb[i, t, e]
mlp.input(W1[k, j], normal(5 / 3 / 30**0.5))  # Kaiming gain for tanh over fan-in B*E = 30
mlp.input(b1[j], normal(0.1))
mlp[hprebn[i, j]] = Sum(embcat[i, k] * W1[k, j], k) + b1[j]
mlp.input(bngain[j], normal(0.1, mean=1.0))
mlp.input(bnbias[j], normal(0.1))
mlp[bnmeani[j]] = Sum(hprebn[i, j], i) / n
mlp[bndiff[i, j]] = hprebn[i, j] - bnmeani[j]
mlp[bndiff2[i, j]] = bndiff[i, j] ** 2
mlp[bnvar[j]] = Sum(bndiff2[i, j], i) / (n - 1)  # Bessel's correction
mlp[bnvar_inv[j]] = (bnvar[j] + eps) ** Rational(-1, 2)
mlp[bnraw[i, j]] = bndiff[i, j] * bnvar_inv[j]
mlp[hpreact[i, j]] = bngain[j] * bnraw[i, j] + bnbias[j]
mlp[h[i, j]] = tanh(hpreact[i, j])
mlp.input(W2[j, c], normal(0.1))
mlp.input(b2[c], normal(0.1))
mlp[logits[i, c]] = Sum(h[i, j] * W2[j, c], j) + b2[c]
mlp[logit_maxes[i]] = Maximum(logits[i, c], c)
mlp[norm_logits[i, c]] = logits[i, c] - logit_maxes[i]
mlp[counts[i, c]] = exp(norm_logits[i, c])
mlp[counts_sum[i]] = Sum(counts[i, c], c)
mlp[counts_sum_inv[i]] = counts_sum[i] ** -1
mlp[probs[i, c]] = counts[i, c] * counts_sum_inv[i]
mlp[logprobs[i, c]] = log(probs[i, c])
mlp[loss] = -Sum(logprobs[i, Yb[i]], i) / n
mlp.loss(loss)
program = mlp.build()
