"""A small GPT at character level: token and position embeddings, ``2`` blocks of pre-LayerNorm
causal self-attention and a GELU MLP, each added to the residual stream, a final LayerNorm and
a linear head with cross-entropy at every position. Composed from the layer files as makemore's
MLP is (layernorm_positions.py, causal_self_attention.py, gelu_mlp.py and
cross_entropy_logsumexp.py, the log-softmax form that stays finite where a probability underflows;
each block's copies renamed by a prefix); the logits are written as ``n*T`` rows (row ``T*i + t``) so
that cross_entropy.py's rows are the positions. Every layer boundary's adjoint is materialised."""
from pathlib import Path

from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, load, normal

HERE = Path(__file__).parent
BLOCKS = 2
n, T, V, D, NH, HE, M = symbols("n T V D NH HE M", integer=True, positive=True)
loss = symbols("loss")
i, t, d, c, v = Idx("i", n), Idx("t", T), Idx("d", D), Idx("c", V), Idx("v", V)
h, e, m, r = Idx("h", NH), Idx("e", HE), Idx("m", M), Idx("r", n * T)
Xb, Yb, wte, wpe, x0, lnf_g, lnf_b, lnf, Wlm, blm, logits = symbols(
    "Xb Yb wte wpe x0 lnf_g lnf_b lnf Wlm blm logits", cls=IndexedBase)

# double=False: a training step differentiates once; deriving the double backward of the whole
# model would take half a minute of every regen for no caller (each layer file has its own)
gpt = Builder("gpt", sizes={n: 2, T: 4, V: 27, D: 8, NH: 2, HE: 4, M: 16}, adjoints=("x0",),
              double=False)
gpt.labels(Xb[i, t], V)
gpt.labels(Yb[r], V)  # the next character of each position, row T*i + t
gpt.input(wte[v, d], normal(0.3))
gpt.input(wpe[t, d], normal(0.3))
gpt[x0[i, t, d]] = wte[Xb[i, t], d] + wpe[t, d]
stream = "x0"
layernorm = load(HERE / "layernorm_positions.py")
attention = load(HERE / "causal_self_attention.py")
mlp = load(HERE / "gelu_mlp.py")
for block in range(1, BLOCKS + 1):
    name = f"b{block}_"
    for norm in ("ln1", "ln2"):
        gpt.input(IndexedBase(f"{name}{norm}_g")[d], normal(0.1, mean=1.0))
        gpt.input(IndexedBase(f"{name}{norm}_b")[d], normal(0.1))
    for W in ("Wq", "Wk", "Wv"):
        gpt.input(IndexedBase(name + W)[d, h, e], normal(0.1))
    gpt.input(IndexedBase(name + "Wo")[h, e, d], normal(0.1))
    gpt.input(IndexedBase(name + "bo")[d], normal(0.1))
    gpt.input(IndexedBase(name + "W1")[d, m], normal(0.1))
    gpt.input(IndexedBase(name + "b1")[m], normal(0.1))
    gpt.input(IndexedBase(name + "W2")[m, d], normal(0.1))
    gpt.input(IndexedBase(name + "b2")[d], normal(0.1))
    gpt.include(layernorm, prefix=name + "ln1_", x=stream, gamma=name + "ln1_g",
                beta=name + "ln1_b", y=name + "h1")
    gpt.include(attention, prefix=name + "att_", x=name + "h1", Wq=name + "Wq", Wk=name + "Wk",
                Wv=name + "Wv", Wo=name + "Wo", bo=name + "bo", y=name + "att")
    mid, after = IndexedBase(name + "mid"), IndexedBase(name + "out")
    gpt[mid[i, t, d]] = IndexedBase(stream)[i, t, d] + IndexedBase(name + "att")[i, t, d]
    gpt.include(layernorm, prefix=name + "ln2_", x=name + "mid", gamma=name + "ln2_g",
                beta=name + "ln2_b", y=name + "h2")
    gpt.include(mlp, prefix=name + "mlp_", x=name + "h2", W1=name + "W1", b1=name + "b1",
                W2=name + "W2", b2=name + "b2", y=name + "ff")
    gpt[after[i, t, d]] = mid[i, t, d] + IndexedBase(name + "ff")[i, t, d]
    stream = name + "out"
gpt.input(lnf_g[d], normal(0.1, mean=1.0))
gpt.input(lnf_b[d], normal(0.1))
gpt.include(layernorm, prefix="lnf_", x=stream, gamma="lnf_g", beta="lnf_b", y="lnf")
gpt.input(Wlm[d, c], normal(0.1))
gpt.input(blm[c], normal(0.1))
gpt[logits[T * i + t, c]] = Sum(lnf[i, t, d] * Wlm[d, c], d) + blm[c]
gpt.include(load(HERE / "cross_entropy_logsumexp.py"), sizes={"n": n * T}, prefix="ce_", Y="Yb",
            loss="loss")
gpt.loss(loss)
gpt.latex(lnf="h", ce_m="m", ce_z=r"\tilde{z}", ce_s="s", ce_logprobs=r"\ell")
program = gpt.build()
