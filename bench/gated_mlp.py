"""A gated MLP block (SwiGLU-style, silu written with exp), derived with no ``adjoints=``: the
emitted torch backward against torch autograd of the same forward, float32, one thread, the two
timed alternately, the median of the per-repetition ratios (< 1 means the emitted code is faster).

    python bench/gated_mlp.py [--n 4096] [--d 256] [--h 512] [--repeat 15] [--show]

    out[i, o] = Sum(a[i, h]*silu(b[i, h])*U[h, o], h)
    a[i, h] = Sum(x[i, d]*W[d, h], d),  b[i, h] = Sum(x[i, d]*V[d, h], d)

Before automatic materialisation the compact backward was one einsum over 4 to 7 arrays per
gradient (170x autograd at n = 4096); ``--show`` prints the backward emitted now.
"""
import argparse
import statistics
import time

import torch
from sympy import Idx, IndexedBase, Sum, exp, symbols

from symderive import Builder, normal
from symderive.api import emit
from symderive.check import load_module

n, D, H, O = symbols("n D H O", integer=True, positive=True)
i, d, h, o = Idx("i", n), Idx("d", D), Idx("h", H), Idx("o", O)
x, W, V, U, a, b, out = symbols("x W V U a b out", cls=IndexedBase)


def gated_mlp():
    """The block as a person writes it: no ``adjoints=``, silu(b) = b/(1 + exp(-b))."""
    layer = Builder("gated_mlp", sizes={n: 8, D: 5, H: 7, O: 5})
    layer.input(x[i, d], normal(1.0))
    layer.input(W[d, h], normal(0.3))
    layer.input(V[d, h], normal(0.3))
    layer.input(U[h, o], normal(0.3))
    layer[a[i, h]] = Sum(x[i, d] * W[d, h], d)
    layer[b[i, h]] = Sum(x[i, d] * V[d, h], d)
    layer[out[i, o]] = Sum(a[i, h] * b[i, h] / (1 + exp(-b[i, h])) * U[h, o], h)
    layer.output(out)
    return layer.build()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--h", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machines are shared: one thread keeps the ratio steady

    source = emit(gated_mlp(), "torch").source
    if args.show:
        print(source[source.index("def backward"):source.index("class ")])
    module = load_module(source, "gated_mlp_torch")

    g = torch.Generator().manual_seed(0)
    shapes = {"x": (args.n, args.d), "W": (args.d, args.h), "V": (args.d, args.h),
              "U": (args.h, args.d)}
    inputs = {k: torch.randn(*s, generator=g) / (s[0] ** 0.5 if k != "x" else 1.0)
              for k, s in shapes.items()}
    dout = torch.randn(args.n, args.d, generator=g)
    values = module.forward(*inputs.values())

    leaves = [t.clone().requires_grad_() for t in inputs.values()]
    lx, lW, lV, lU = leaves
    la, lb = lx @ lW, lx @ lV
    lout = (la * lb / (1 + torch.exp(-lb))) @ lU  # the same forward, as autograd records it

    def ours():
        return module.backward(values, dout)

    def autograd():
        return torch.autograd.grad(lout, leaves, dout, retain_graph=True)

    got, want = ours(), autograd()
    for name, reference in zip(shapes, want):
        error = ((got[name] - reference).abs().max() / reference.abs().max()).item()
        assert error < 1e-4, (name, error)

    ratios, mine, theirs = [], [], []
    for _ in range(args.repeat):  # interleaved, so drift in the machine hits both alike
        start = time.perf_counter()
        ours()
        middle = time.perf_counter()
        autograd()
        end = time.perf_counter()
        mine.append(middle - start)
        theirs.append(end - middle)
        ratios.append((middle - start) / (end - middle))
    case = f"gated MLP n={args.n} d={args.d} h={args.h} torch float32, 1 thread"
    print(f"{'case':52} {'ours (ms)':>10} {'autograd (ms)':>14} {'ratio':>6}")
    print(f"{case:52} {statistics.median(mine) * 1e3:10.1f} "
          f"{statistics.median(theirs) * 1e3:14.1f} {statistics.median(ratios):6.2f}")


if __name__ == "__main__":
    main()
