"""Run time of the emitted batchnorm and cross-entropy code against what people use today:
makemore's one-liners, autograd through a hand-written forward, a hand-written fewer-pass torch
form, ATen's fused ``native_batch_norm_backward``, ``torch.compile`` of the autograd backward, and
hand-written NumPy with ``out=`` buffers. The generated modules are imported from ``generated/``
as they are when the suite runs and called through their module-level ``forward``/``backward``
and their ``autograd.Function``."""
from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F

from .timing import Row, autograd_function, compare, load_generated

EPS = 1e-5
BATCHNORM_SHAPES = [(32, 64), (512, 512), (4096, 1024)]
CROSS_ENTROPY_SHAPES = [(32, 27), (4096, 1000), (512, 32000)]


def _close(got, want, what: str) -> None:
    got, want = got.detach(), want.detach()
    error = float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))
    if not error < 1e-3:
        raise AssertionError(f"{what}: the generated result is off by {error:.2e} (relative)")


def _batchnorm_inputs(n: int, h: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, generator=g)
    gain, bias = torch.rand(h, generator=g) + 0.5, torch.randn(h, generator=g)
    return x, gain, bias, torch.randn(n, h, generator=g)


def _hand_forward(x, gain, bias, bessel: bool):
    return gain * (x - x.mean(0)) / (x.var(0, unbiased=bessel) + EPS).sqrt() + bias


def batchnorm_case(n: int, h: int, bessel: bool):
    """The generated batchnorm backward (Bessel's correction or the biased variance) on one set of
    inputs, checked against autograd, and its baselines by name (ATen's kernel for the biased
    variance only): ``(module, (x, gain, bias, dy), generated, baselines)``."""
    module = load_generated("batchnorm_torch" if bessel else "batchnorm_biased_torch")
    x, gain, bias, dy = _batchnorm_inputs(n, h)
    values = module.forward(hprebn=x, bngain=gain, bnbias=bias)

    def generated():
        return module.backward(values, dy)

    # The baselines' own saved values, computed here, not read from the generated forward.
    mean, var = x.mean(0), x.var(0, unbiased=bessel)
    rstd = (var + EPS).rsqrt()
    xhat = (x - mean) * rstd
    m = n - 1 if bessel else n

    def one_liner():  # makemore's exercise 3, plus the gain and bias gradients
        return (gain * rstd / n * (n * dy - dy.sum(0) - n / m * xhat * (dy * xhat).sum(0)),
                (xhat * dy).sum(0), dy.sum(0))

    def fewer_passes():  # scalars folded into row vectors, then in-place updates of one temporary
        dgain, dbias = (dy * xhat).sum(0), dy.sum(0)
        scale = gain * rstd
        dx = dy * scale
        dx.sub_(dbias * (scale / n))
        dx.addcmul_(xhat, dgain * (scale / m), value=-1)
        return dx, dgain, dbias

    leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
    out = _hand_forward(*leaves, bessel)

    def autograd():
        return torch.autograd.grad(out, leaves, dy, retain_graph=True)

    got = generated()
    for name, want in zip(("hprebn", "bngain", "bnbias"), autograd()):
        _close(got[name], want, f"batchnorm {name}")
    _close(fewer_passes()[0], autograd()[0], "hand-written fewer-pass form")

    baselines = {"notebook one-liner": one_liner, "hand-written fewer-pass torch": fewer_passes,
                 "autograd (hand-written forward)": autograd}
    if not bessel:  # ATen's kernel normalises with the biased variance only
        def aten():
            return torch.ops.aten.native_batch_norm_backward(
                dy, x, gain, None, None, mean, rstd, True, EPS, [True, True, True])
        _close(aten()[0], autograd()[0], "ATen native_batch_norm_backward")
        baselines["ATen native_batch_norm_backward"] = aten
    return module, (x, gain, bias, dy), generated, baselines


def batchnorm(n: int, h: int, bessel: bool, repeat: int, compiled: bool) -> list[Row]:
    """The generated batchnorm backward's time against every baseline of ``batchnorm_case``
    (and ``torch.compile``'s, with the generated ``compiled()`` variant, when ``compiled``)."""
    module, (x, gain, bias, dy), generated, baselines = batchnorm_case(n, h, bessel)
    if compiled:
        baselines["torch.compile autograd backward"] = _compiled_backward(x, gain, bias, dy, bessel)
    variant = "bessel" if bessel else "biased"
    rows = compare(f"batchnorm backward ({variant}) torch", f"{n}x{h}", "float32", baselines,
                   generated, repeat)
    if compiled and not bessel:
        want = baselines["autograd (hand-written forward)"]()[0]
        rows += compiled_variant(module, x, gain, bias, dy, want, baselines, repeat)
    return rows


def compiled_variant(module, x, gain, bias, dy, want, baselines, repeat) -> list[Row]:
    """The generated module's own ``torch.compile`` entry point (``compiled()``), its backward
    timed against ATen's fused kernel and the compiled autograd backward."""
    shape = f"{x.shape[0]}x{x.shape[1]}"
    case = "batchnorm backward (biased) torch, generated compiled()"
    wanted = {name: baselines[name] for name in ("ATen native_batch_norm_backward",
                                                  "torch.compile autograd backward")}
    if not hasattr(module, "compiled"):
        return compare(case, shape, "float32", dict.fromkeys(
            wanted, "the generated module has no compiled() entry point"), None, repeat)
    # The benchmark reruns one graph's backward (retain_graph), which a compiled backward allows
    # only without donated buffers (the kernels are the same); the backward may be compiled
    # lazily, at its first call, so the setting covers the timing too. Static shapes, as the
    # compiled baseline has: every shape's module is loaded from one file, and torch.compile
    # would otherwise take the second shape it sees for a reason to compile shape-generic code.
    with torch._functorch.config.patch(donated_buffer=False):
        try:
            leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
            out = module.compiled(dynamic=False)(*leaves)
            out = out[0] if isinstance(out, tuple) else out

            def generated():
                return torch.autograd.grad(out, leaves, dy, retain_graph=True)

            _close(generated()[0], want, "generated compiled()")
        except Exception as error:
            return compare(case, shape, "float32", dict.fromkeys(
                wanted, f"compiled() failed: {type(error).__name__}: {str(error)[:120]}"), None,
                repeat)
        return compare(case, shape, "float32", wanted, generated, repeat)


def _compiled_backward(x, gain, bias, dy, bessel: bool):
    """The backward of the hand-written forward compiled by ``torch.compile`` (one fused kernel),
    or why it is unavailable here."""
    try:
        forward = torch.compile(lambda a, b, c: _hand_forward(a, b, c, bessel), dynamic=False)
        leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
        out = forward(*leaves)

        def backward():
            return torch.autograd.grad(out, leaves, dy, retain_graph=True)

        backward()
        return backward
    except Exception as error:  # no compiler, unsupported platform: the row says so
        return f"torch.compile failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"


def batchnorm_numpy(n: int, h: int, repeat: int) -> list[Row]:
    """The generated NumPy batchnorm backward (Bessel) against hand-written NumPy."""
    module = load_generated("batchnorm_numpy")
    x, gain, bias, dy = (t.numpy() for t in _batchnorm_inputs(n, h))
    values = module.forward(hprebn=x, bngain=gain, bnbias=bias)

    def generated():
        return module.backward(values, dy)

    mean, var = x.mean(0), x.var(0, ddof=1)
    rstd = 1 / np.sqrt(var + EPS)
    xhat = (x - mean) * rstd
    buffer, scratch = np.empty_like(x), np.empty_like(x)

    def with_out():  # fewer passes, every full-size result written into a preallocated buffer
        np.multiply(dy, xhat, out=scratch)
        dgain, dbias = scratch.sum(0), dy.sum(0)
        scale = gain * rstd
        np.multiply(dy, scale, out=buffer)
        np.subtract(buffer, dbias * (scale / n), out=buffer)
        np.multiply(xhat, dgain * (scale / (n - 1)), out=scratch)
        np.subtract(buffer, scratch, out=buffer)
        return buffer, dgain, dbias

    def one_liner():
        return (gain * rstd / n * (n * dy - dy.sum(0) - n / (n - 1) * xhat * (dy * xhat).sum(0)),
                (xhat * dy).sum(0), dy.sum(0))

    _close(torch.from_numpy(generated()["hprebn"]), torch.from_numpy(one_liner()[0]),
           "numpy batchnorm")
    return compare("batchnorm backward (bessel) numpy", f"{n}x{h}", "float32",
                   {"hand-written numpy with out=": with_out, "notebook one-liner numpy": one_liner},
                   generated, repeat)


def _call_function(module, **inputs):
    """``Function.apply`` with the inputs in the order the module's ``forward`` takes them."""
    order = [name for name, p in inspect.signature(module.forward).parameters.items()
             if name in inputs]
    result = autograd_function(module).apply(*[inputs[name] for name in order])
    return result[0] if isinstance(result, tuple) else result  # outputs first, saved values after


def cross_entropy(n: int, v: int, repeat: int) -> list[Row]:
    """Cross-entropy forward + backward through the emitted Function, against F.cross_entropy +
    autograd; both start from a fresh leaf each call."""
    module = load_generated("cross_entropy_torch")
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(n, v, generator=g), torch.randint(0, v, (n,), generator=g)

    def generated():
        leaf = logits.detach().requires_grad_()
        loss = _call_function(module, logits=leaf, Y=labels)
        return loss, torch.autograd.grad(loss, leaf)[0]

    def reference():
        leaf = logits.detach().requires_grad_()
        loss = F.cross_entropy(leaf, labels)
        return loss, torch.autograd.grad(loss, leaf)[0]

    (loss, grad), (want_loss, want_grad) = generated(), reference()
    _close(loss.reshape(()), want_loss, "cross-entropy loss")
    _close(grad, want_grad, "cross-entropy gradient")
    return compare("cross-entropy forward+backward Function", f"{n}x{v}", "float32",
                   {"F.cross_entropy + autograd": reference}, generated, repeat)


def cases(quick: bool, repeat: int) -> list:
    """The measurements of this module as zero-argument callables returning rows."""
    bn_shapes = BATCHNORM_SHAPES[:1] if quick else BATCHNORM_SHAPES
    ce_shapes = CROSS_ENTROPY_SHAPES[:1] if quick else CROSS_ENTROPY_SHAPES
    found = []
    for n, h in bn_shapes:
        for bessel in (True, False):
            found.append((f"batchnorm {n}x{h} bessel={bessel}",
                          lambda n=n, h=h, b=bessel: batchnorm(n, h, b, repeat, not quick)))
        found.append((f"batchnorm numpy {n}x{h}", lambda n=n, h=h: batchnorm_numpy(n, h, repeat)))
    for n, v in ce_shapes:
        found.append((f"cross-entropy {n}x{v}", lambda n=n, v=v: cross_entropy(n, v, repeat)))
    return found
