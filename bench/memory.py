"""What one call allocates, the generated code against its baselines: every tensor an operator
returns in storage it did not receive is counted once, in bytes, through a ``TorchDispatchMode``
that sees each operator call (autograd's backward included); views, in-place updates and ``out=``
results add nothing. A kernel's internal scratch (softmax's, ATen's batchnorm's) is invisible to
the mode, so a fused library call looks as cheap as its outputs: the comparison favours the
baseline. Not counted either: a tensor made from Python data (``torch.tensor``: its storage
exists before any operator sees it) and sparse tensors. Bytes do not depend on the machine's load, so these rows are exact where the timed ones
move between runs; ``ratio`` is generated / baseline bytes and lower is better."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .kernels import BATCHNORM_SHAPES, CROSS_ENTROPY_SHAPES, _call_function, batchnorm_case
from .timing import Row, load_generated, threads


class _Allocations(TorchDispatchMode):
    """Adds up the bytes of the storages operators return that none of their inputs had."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        given = {_storage(t) for t in tree_leaves((args, kwargs))
                 if isinstance(t, (torch.Tensor, torch.UntypedStorage))}
        result = func(*args, **kwargs)
        fresh = {}
        for t in tree_leaves(result):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided \
                    and _storage(t) not in given:
                fresh[_storage(t)] = t.untyped_storage().nbytes()
        self.bytes += sum(fresh.values())
        return result


def _storage(t) -> int | None:
    """Where ``t``'s (or a storage's own) data starts; None for a layout without one storage
    (sparse tensors are not counted)."""
    if isinstance(t, torch.UntypedStorage):
        return t.data_ptr()
    return t.untyped_storage().data_ptr() if t.layout == torch.strided else None


def allocated(function) -> int:
    """The bytes ``function()`` allocates for operator results (after one warm-up call)."""
    function()
    with _Allocations() as counter:
        function()
    return counter.bytes


def _rows(case: str, shape: str, generated, baselines: dict) -> list[Row]:
    ours = allocated(generated)
    rows = []
    for name, baseline in baselines.items():
        theirs = allocated(baseline)
        rows.append(Row(case, shape, "float32", threads(), name, ours / theirs,
                        generated_bytes=ours, baseline_bytes=theirs))
    return rows


def batchnorm(n: int, h: int) -> list[Row]:
    """The generated biased batchnorm backward against ATen's kernel, the hand-written fewer-pass
    form and autograd through a hand-written forward (the baselines of ``kernels.batchnorm_case``)."""
    _, _, generated, baselines = batchnorm_case(n, h, bessel=False)
    return _rows("batchnorm backward (biased) torch, bytes allocated", f"{n}x{h}", generated,
                 {name: baselines[name] for name in ("ATen native_batch_norm_backward",
                                                     "hand-written fewer-pass torch",
                                                     "autograd (hand-written forward)")})


def cross_entropy(n: int, v: int) -> list[Row]:
    """Cross-entropy forward + backward through the emitted Function against F.cross_entropy +
    autograd, each from a fresh leaf."""
    module = load_generated("cross_entropy_torch")
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(n, v, generator=g), torch.randint(0, v, (n,), generator=g)

    def generated():
        leaf = logits.detach().requires_grad_()
        return torch.autograd.grad(_call_function(module, logits=leaf, Y=labels), leaf)

    def reference():
        leaf = logits.detach().requires_grad_()
        return torch.autograd.grad(F.cross_entropy(leaf, labels), leaf)

    return _rows("cross-entropy forward+backward Function, bytes allocated", f"{n}x{v}",
                 generated, {"F.cross_entropy + autograd": reference})


def cases(quick: bool, repeat: int) -> list:
    """The measurements of this module as zero-argument callables returning rows."""
    bn_shapes = BATCHNORM_SHAPES[:1] if quick else BATCHNORM_SHAPES
    ce_shapes = CROSS_ENTROPY_SHAPES[:1] if quick else CROSS_ENTROPY_SHAPES
    return [(f"memory batchnorm {n}x{h}", lambda n=n, h=h: batchnorm(n, h)) for n, h in bn_shapes] \
        + [(f"memory cross-entropy {n}x{v}", lambda n=n, v=v: cross_entropy(n, v))
           for n, v in ce_shapes]
