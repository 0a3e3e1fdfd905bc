"""Programs that grow with a parameter, for timing the deriver: a tanh + batchnorm MLP of any depth
(each layer a matmul, makemore's batchnorm with Bessel's correction included as a layer, and tanh),
and a chain of elementwise tanh statements of any length."""
from __future__ import annotations

from sympy import Idx, IndexedBase, Sum, symbols, tanh

from symderive import Builder, normal
from symderive.program.load import load

from .timing import ROOT

BATCHNORM_NAMES = ("hprebn", "bngain", "bnbias", "bnmeani", "bndiff", "bndiff2", "bnvar",
                   "bnvar_inv", "bnraw", "hpreact")


def tanh_batchnorm_mlp(depth: int):
    """``h0 = x``; per layer ``l``: ``hprebn_l = h_{l-1} @ W_l``, batchnorm, ``h_l = tanh``."""
    n, H = symbols("n H", integer=True, positive=True)
    i, j, k = Idx("i", n), Idx("j", H), Idx("k", H)
    batchnorm = load(ROOT / "derivations" / "batchnorm.py")
    mlp = Builder(f"mlp{depth}", sizes={n: 8, H: 6})
    previous = IndexedBase("x")
    mlp.input(previous[i, j], normal(1.0))
    for layer in range(1, depth + 1):
        W, hprebn, h = (IndexedBase(f"{name}{layer}") for name in ("W", "hprebn", "h"))
        mlp.input(W[k, j], normal(0.3))
        mlp.input(IndexedBase(f"bngain{layer}")[j], normal(0.1, mean=1.0))
        mlp.input(IndexedBase(f"bnbias{layer}")[j], normal(0.1))
        mlp[hprebn[i, j]] = Sum(previous[i, k] * W[k, j], k)
        mlp.include(batchnorm, **{name: f"{name}{layer}" for name in BATCHNORM_NAMES})
        mlp[h[i, j]] = tanh(IndexedBase(f"hpreact{layer}")[i, j])
        previous = h
    mlp.output(previous)
    return mlp.build()


def tanh_chain(length: int):
    """``y1 = tanh(x)``, ``y2 = tanh(y1)``, ... elementwise over one axis."""
    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    chain = Builder(f"chain{length}", sizes={n: 8})
    previous = IndexedBase("x")
    chain.input(previous[i], normal(1.0))
    for position in range(1, length + 1):
        y = IndexedBase(f"y{position}")
        chain[y[i]] = tanh(previous[i])
        previous = y
    chain.output(previous)
    return chain.build()
