"""The layers people use most, each derived with no ``adjoints=`` and emitted for torch: forward
plus backward of the emitted ``autograd.Function`` against autograd through a plain torch forward
of the same math (``torch.nn.functional`` or torch's own cell), float32, at a small and a large
size. The programs are the files of ``examples/layers/`` and ``derivations/``; each is derived
and emitted when its row runs, so the rows measure what the tool makes today. The layers the
tool cannot yet express are listed in ``MISSING`` (``bench.report`` prints them), not run.
"""
from __future__ import annotations

import dataclasses
import runpy
import time

import torch

from symderive.api import emit
from symderive.program.load import load
from symderive.verify.check import example_inputs, load_module

from .timing import ROOT, Row, compare

LAYERS = ROOT / "examples" / "layers"
DERIVATIONS = ROOT / "derivations"

# name: (file, small sizes, large sizes), sizes by symbol name
CASES = {
    "GRU cell": (LAYERS / "gru.py", {"n": 16, "D": 32, "H": 64}, {"n": 64, "D": 128, "H": 256}),
    "LSTM cell": (LAYERS / "lstm.py", {"n": 16, "D": 32, "H": 64}, {"n": 64, "D": 128, "H": 256}),
    "tanh MLP + CE": (LAYERS / "mlp_ce.py", {"n": 64, "D": 32, "H": 64, "V": 27},
                      {"n": 4096, "D": 256, "H": 512, "V": 1000}),
    "attention": (LAYERS / "attention.py", {"T": 32, "L": 32, "E": 16},
                  {"T": 512, "L": 512, "E": 64}),
    "causal attention": (LAYERS / "causal_attention.py", {"T": 32, "E": 16},
                         {"T": 512, "E": 64}),
    "conv1d": (LAYERS / "conv1d.py", {"n": 8, "C": 8, "O": 8, "P": 32, "U": 3},
               {"n": 32, "C": 64, "O": 64, "P": 256, "U": 3}),
    "conv1d stride 2 dilation 2": (LAYERS / "conv1d_strided.py",
                                   {"n": 8, "C": 8, "O": 8, "P": 32, "U": 3},
                                   {"n": 32, "C": 64, "O": 64, "P": 256, "U": 3}),
    "conv2d": (LAYERS / "conv2d.py", {"n": 4, "C": 8, "O": 8, "P": 8, "Q": 8, "U": 3, "V": 3},
               {"n": 32, "C": 32, "O": 64, "P": 32, "Q": 32, "U": 3, "V": 3}),
    "avg pool stride 2": (LAYERS / "avg_pool.py", {"n": 8, "C": 16, "P": 64},
                          {"n": 32, "C": 64, "P": 512}),
    "max pool stride 2": (LAYERS / "max_pool.py", {"n": 8, "C": 16, "P": 64},
                          {"n": 32, "C": 64, "P": 512}),
    "avg pool kernel 3 stride 2": (LAYERS / "avg_pool_overlap.py", {"n": 8, "C": 16, "P": 64},
                                   {"n": 32, "C": 64, "P": 512}),
    "max pool kernel 3 stride 2": (LAYERS / "max_pool_overlap.py", {"n": 8, "C": 16, "P": 64},
                                   {"n": 32, "C": 64, "P": 512}),
    "log_softmax": (LAYERS / "log_softmax.py", {"n": 64, "V": 100}, {"n": 1024, "V": 1024}),
    "logsumexp": (LAYERS / "logsumexp.py", {"n": 64, "V": 100}, {"n": 1024, "V": 1024}),
    "RMSNorm": (LAYERS / "rmsnorm.py", {"n": 64, "d": 64}, {"n": 1024, "d": 1024}),
    "LayerNorm": (DERIVATIONS / "layernorm.py", {"n": 64, "d": 64}, {"n": 1024, "d": 1024}),
    "batchnorm": (DERIVATIONS / "batchnorm.py", {"n": 64, "H": 64}, {"n": 1024, "H": 1024}),
    "GroupNorm": (LAYERS / "groupnorm.py", {"n": 8, "G": 4, "Cg": 4, "L": 32},
                  {"n": 32, "G": 8, "Cg": 16, "L": 256}),
}
# Layers of the issue the tool cannot write yet, and why (listed by bench.report): none now.
MISSING: dict[str, str] = {}


def _program(path):
    return load(path) if path.parent == DERIVATIONS else runpy.run_path(str(path))["program"]


def _resized(program, sizes: dict):
    by_name = {str(symbol): symbol for symbol, _ in program.sizes}
    unknown = set(sizes) - set(by_name)
    if unknown:
        raise KeyError(f"{program.name} has no sizes {sorted(unknown)}")
    return dataclasses.replace(program, sizes=tuple(
        (symbol, sizes.get(str(symbol), value)) for symbol, value in program.sizes))


def layer_rows(label: str, path, sizes: dict, repeat: int) -> list[Row]:
    """One row: forward+backward of the emitted Function / autograd through the reference."""
    program = _program(path)
    start = time.perf_counter()
    module = load_module(emit(program, "torch").source, f"bench_{program.name}_torch")
    emit_s = time.perf_counter() - start
    program = _resized(program, sizes)
    inputs = example_inputs(program, torch.float32, seed=0)
    reference = next(f for kind, _, f in program.references if kind == "forward")
    entry = getattr(module, program.name)
    leaves = [v.clone().requires_grad_(v.is_floating_point()) for v in inputs.values()]
    floats = [leaf for leaf in leaves if leaf.requires_grad]

    def outputs_of(forward):
        found = forward(*leaves)
        return tuple(found) if isinstance(found, (tuple, list)) else (found,)

    generator = torch.Generator().manual_seed(1)  # not the inputs' seed: dx would cancel
    upstream = [torch.ones_like(o) if o.dim() == 0 else
                torch.randn(o.shape, generator=generator, dtype=o.dtype)
                for o in outputs_of(reference)]

    def run(forward):
        return torch.autograd.grad(outputs_of(forward), floats, upstream)

    ours, theirs = run(entry), run(reference)
    for name, a, b in zip([n for n, v in inputs.items() if v.is_floating_point()], ours, theirs):
        error = ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        assert error < 1e-3, f"{label}: d{name} differs from autograd's by {error:.2e}"
    shape = " ".join(f"{k}={v}" for k, v in sizes.items())
    rows = compare(f"layer {label} fwd+bwd torch", shape, "float32",
                   {"autograd": lambda: run(reference)}, lambda: run(entry), repeat)
    return [dataclasses.replace(row, note=f"derive+emit {emit_s:.2f} s") for row in rows]


def cases(quick: bool, repeat: int) -> list:
    found = []
    for label, (path, small, large) in CASES.items():
        for sizes in ((small,) if quick else (small, large)):
            found.append((f"layer {label}", lambda p=path, s=sizes, la=label:
                          layer_rows(la, p, s, repeat)))
    return found
