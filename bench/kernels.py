"""Run time of the emitted compact backward against the hand-written kernels people write today
(makemore's one-liners) and against torch autograd, as ratios measured in one process.

    python bench/kernels.py            # prints a table; ratio < 1 means the emitted code is faster
"""
import importlib.util
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

GENERATED = Path(__file__).resolve().parent.parent / "generated"


def generated(name: str):
    spec = importlib.util.spec_from_file_location(name, GENERATED / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


batchnorm_numpy, batchnorm_torch = generated("batchnorm_numpy"), generated("batchnorm_torch")
cross_entropy_torch = generated("cross_entropy_torch")

torch.set_num_threads(1)  # the machines are shared: one thread keeps the ratios steady


def timed(function, repeat: int = 30) -> float:
    function()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def batchnorm(n: int, h: int) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    x, gain, bias = torch.randn(n, h, generator=g), torch.rand(h, generator=g) + 0.5, torch.randn(h)
    dy = torch.randn(n, h, generator=g)
    values = batchnorm_torch.forward(x, gain, bias)
    numpy_values = {k: v.numpy() for k, v in values.items()}

    def notebook_torch():  # makemore's exercise 3 one-liner, plus the gain and bias gradients
        raw, inv = values["bnraw"], values["bnvar_inv"]
        return (gain * inv / n * (n * dy - dy.sum(0) - n / (n - 1) * raw * (dy * raw).sum(0)),
                (raw * dy).sum(0), dy.sum(0))

    def notebook_numpy():
        raw, inv, d = numpy_values["bnraw"], numpy_values["bnvar_inv"], dy.numpy()
        return (gain.numpy() * inv / n * (n * d - d.sum(0) - n / (n - 1) * raw * (d * raw).sum(0)),
                (raw * d).sum(0), d.sum(0))

    leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
    out = leaves[1] * (leaves[0] - leaves[0].mean(0)) / (
        leaves[0].var(0, unbiased=True) + 1e-5).sqrt() + leaves[2]

    def autograd():
        return torch.autograd.grad(out, leaves, dy, retain_graph=True)

    ours_torch = timed(lambda: batchnorm_torch.backward(values, dy))
    ours_numpy = timed(lambda: batchnorm_numpy.backward(numpy_values, dy.numpy()))
    return [(f"batchnorm {n}x{h} torch vs notebook one-liner", ours_torch, timed(notebook_torch)),
            (f"batchnorm {n}x{h} torch vs autograd", ours_torch, timed(autograd)),
            (f"batchnorm {n}x{h} numpy vs notebook one-liner", ours_numpy, timed(notebook_numpy))]


def cross_entropy(n: int, v: int) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(n, v, generator=g), torch.randint(0, v, (n,), generator=g)
    values = cross_entropy_torch.forward(logits, labels)

    def notebook():  # makemore's exercise 2
        d = F.softmax(logits, 1)
        d[range(n), labels] -= 1
        return d / n

    leaf = logits.clone().requires_grad_()
    loss = F.cross_entropy(leaf, labels)

    def autograd():
        return torch.autograd.grad(loss, leaf, retain_graph=True)

    ours = timed(lambda: cross_entropy_torch.backward(values))
    return [(f"cross-entropy {n}x{v} torch vs notebook", ours, timed(notebook)),
            (f"cross-entropy {n}x{v} torch vs F.cross_entropy autograd", ours, timed(autograd))]


def main():
    rows = batchnorm(32, 64) + batchnorm(1024, 1024) + cross_entropy(32, 27) + \
        cross_entropy(1024, 4096)
    print(f"{'case':58} {'ours (us)':>10} {'baseline (us)':>14} {'ratio':>6}")
    for case, ours, baseline in rows:
        print(f"{case:58} {ours * 1e6:10.1f} {baseline * 1e6:14.1f} {ours / baseline:6.2f}")


if __name__ == "__main__":
    main()
