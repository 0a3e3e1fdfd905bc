"""The helper functions an emitted module defines when its code calls them, as source text: column
sums that stream through large arrays (``leading_sums``, ``leading_dot``), floating-point division
of plain sizes (``quotient``), the log-softmax read at the labels (``log_softmax_at``) and the
input checks that hold under ``torch.compile`` and ``vmap`` (``labels_in_range``,
``signs_hold``) and the autograd Function's apply without its Python preamble (``function_apply``). ``helpers`` picks the ones a module's text calls.
"""
from __future__ import annotations

import re

# The helper ``LeadingSums`` prints as, emitted into a torch module that calls it. Both paths add
# 16 rows at a time in one streaming pass and then the 16-row partial sums (as accurate as
# ``.sum``'s cascade): eagerly 16 interleaved blocks of rows through a BLAS matrix-vector product;
# under ``torch.compile``, 16 consecutive rows at a time, a reduction that inductor fuses with the
# producer of ``x`` and walks a few pages at a time, where ``x.sum(0)`` becomes one loop down each
# column at the row stride (about 1.8x ATen's fused batchnorm backward at 4096x1024, 1 thread).
# The columns stay an axis of their own, so code compiled for symbolic shapes indexes without a
# modulo (shape-generic code with one ran about 6x slower).
LEADING_SUMS = '''def leading_sums(x, axes=1):
    """``x`` summed over its first ``axes`` axes (``x.sum(0)`` for one). A large contiguous ``x``
    is added 16 rows at a time in one streaming pass, then those sums by ``.sum``: as accurate
    as ``.sum``, which walks each column at the row stride, and faster."""
    if x.numel() < 1 << 20:  # small: the call's own cost is the time, so one plain call
        return x.sum(0) if axes == 1 else x.sum(tuple(range(axes)))
    rows = x.shape[:axes].numel()
    blocks = rows // 16
    if blocks < 2 or not x.is_contiguous() or x.dtype not in (torch.float32, torch.float64):
        return x.sum(tuple(range(axes)))  # .sum adds half floats in float32; a matmul need not
    flat = x.reshape(rows, x.numel() // rows)
    columns = flat.shape[1]
    if torch.compiler.is_compiling():  # 16 consecutive rows: a fused reduction
        partial = flat[:16 * blocks].view(blocks, 16, columns).sum(1)
    else:  # 16 interleaved blocks of rows: one matrix-vector product
        head = flat[:16 * blocks].view(16, blocks * columns)
        partial = (x.new_ones(16) @ head).view(blocks, columns)
    total = partial.sum(0)
    if 16 * blocks < rows:
        total = total + flat[16 * blocks:].sum(0)
    return total.view(x.shape[axes:])'''


# The helper a column sum of a product prints as (``LeadingSums`` of a ``SumOfProduct``). The
# product of two large arrays, made whole and then summed, is written once and read again: two of
# the four full-size passes of ``leading_sums(a*b)``. Instead the products of each block of rows
# are added into one block-sized accumulator (``addcmul_``) that stays in cache, so only ``a`` and
# ``b`` are read from memory, and the accumulator is then summed as ``leading_sums`` sums (16
# interleaved rows through a matrix-vector product, then ``.sum``). Each accumulator element adds
# at most 64 products in sequence (the block grows for taller arrays), so the result is as
# accurate as ``(a*b).sum``. The loop is over blocks of about 512 KiB, never over elements. Under
# ``torch.compile``, for arrays under 2 MiB (the caches hold them whole: the blocks only add
# calls), for non-contiguous ones and where autograd must see the product, it is
# ``leading_sums(a*b)``.
LEADING_DOT = '''def leading_dot(a, b, axes=1):
    """``(a*b)`` summed over its first ``axes`` axes, for ``a`` and ``b`` of one shape, without
    making the full-size product: each block of rows is multiplied and added into one block-sized
    accumulator that stays in cache, which is then summed as ``leading_sums`` sums."""
    if torch.compiler.is_compiling() or a.shape != b.shape \\
            or a.numel() * a.element_size() < 1 << 21 \\
            or a.dtype not in (torch.float32, torch.float64) or b.dtype != a.dtype \\
            or not (a.is_contiguous() and b.is_contiguous()) \\
            or torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return leading_sums(a * b, axes)
    rows = a.shape[:axes].numel()
    columns = a.numel() // rows
    step = max(16, (1 << 19) // (16 * columns * a.element_size()) * 16, -(-rows // 1024) * 16)
    if rows < 2 * step:
        return leading_sums(a * b, axes)
    flat_a, flat_b = a.reshape(rows, columns), b.reshape(rows, columns)
    blocks = rows // step
    accumulator = flat_a[:step] * flat_b[:step]
    for block in range(1, blocks):
        chosen = slice(block * step, (block + 1) * step)
        accumulator.addcmul_(flat_a[chosen], flat_b[chosen])
    partial = a.new_ones(16) @ accumulator.view(16, step // 16 * columns)
    total = partial.view(step // 16, columns).sum(0)
    if blocks * step < rows:
        total = total + (flat_a[blocks * step:] * flat_b[blocks * step:]).sum(0)
    return total.view(a.shape[axes:])'''


# Python's / raises ZeroDivisionError on plain numbers, where an array's division gives inf or nan
# as IEEE arithmetic does (and torch and NumPy do for the same formula); a size read from a shape
# can be 0 (an empty batch) and n - 1 is 0 for a batch of one. So a division of plain numbers by
# anything that can be 0 goes through this helper, emitted into a module that calls it.
QUOTIENT = '''def quotient(a, b):
    """``a/b`` as floating point divides: +-inf or nan where ``b`` is 0, not ZeroDivisionError."""
    return a / b if b else math.copysign(math.inf, a) if a else math.nan'''

# The helper ``LogSoftmaxAt`` prints as in torch. A probability at or above 2**24 times the
# smallest normal float has all its digits, so its log is as accurate as the shifted form; below
# that, the shifted form is used for those rows. Deciding whether any row needs it is one check
# of n values on the CPU; on another device the check would make the host wait, under
# torch.compile or vmap a value cannot decide a branch, and torch.jit.trace would record the
# branch taken for its example as the one for every input, so there the shifted form is
# computed for every row and chosen where needed (what the code did before this rewrite).
LOG_SOFTMAX_AT = '''def log_softmax_at(probs, logits, labels):
    """``log_softmax(logits, 1)`` at one label per row, from ``probs = softmax(logits, 1)``: the
    log of the label's probability where that is a normal float with all its digits, and the
    shifted form ``logits - max + log(probs.amax(1))`` (finite wherever the logits are) for the
    rows where it underflows, computed only when some row needs it."""
    rows = torch.arange(labels.shape[0], device=labels.device)
    picked = probs[rows, labels]
    result = torch.log(picked)
    small = picked < torch.finfo(picked.dtype).tiny * 2 ** 24
    if probs.device.type == "cpu" and not torch.compiler.is_compiling() \\
            and not torch.jit.is_tracing():  # a trace would keep one branch for every input
        try:
            if not bool(small.any()):
                return result
        except RuntimeError:  # under vmap a value cannot decide a branch: compute both
            pass
    shifted = logits[rows, labels] - logits.amax(1) + torch.log(probs.amax(1))
    return torch.where(small, shifted, result)'''

# The torch modules' test that every label lies in range(classes), as ``check_labels`` calls it.
# Eager on the CPU it is one min-max pass read by Python. Where no value may decide a branch it
# cannot return False, so it raises there itself: under torch.compile, tracing (make_fx, export)
# or on another device through an asynchronous assert (on a GPU, at the next synchronisation, as
# F.cross_entropy's own check does). Under a torch.func transform (vmap, grad) an assert has no
# batching rule, so an index that is out of bounds exactly when some label is raises instead, run
# eagerly even inside torch.compile (a graph break), where an unused index would be dropped.
# torch.jit.trace keeps neither (it drops what no output reads): a trace checks its example only.
LABELS_IN_RANGE = '''def labels_in_range(labels, classes):
    """Whether every entry of the integer array ``labels`` lies in ``range(classes)`` (is not
    negative, for ``classes`` None); raises a RuntimeError itself where no value may decide a
    branch (``torch.compile``, tracing, another device)."""
    if labels.numel() == 0:
        return True
    if torch._C._are_functorch_transforms_active():  # vmap, grad: no assert is batched
        return transformed_labels_in_range(labels, classes)
    if labels.device.type == "cpu" and type(labels) is torch.Tensor \\
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing() \\
            and torch.utils._python_dispatch._get_current_dispatch_mode() is None:
        low, high = torch.aminmax(labels)
        return int(low) >= 0 and (classes is None or int(high) < classes)
    bad = (labels < 0) if classes is None else (labels < 0) | (labels >= classes)
    torch._assert_async(~bad.any(), "labels out of range")
    return True


@torch.compiler.disable
def transformed_labels_in_range(labels, classes):
    """``labels_in_range`` under vmap or grad: an index out of bounds exactly when a label is."""
    bad = (labels < 0) if classes is None else (labels < 0) | (labels >= classes)
    try:
        labels.new_zeros(1)[bad.any().long().reshape(1)]
    except IndexError:
        return False
    return True'''

# The torch modules' test of an input's declared sign, as ``check_signs`` calls it: eager on the
# CPU one min (or max) pass read by Python; elsewhere raising itself as ``labels_in_range`` does
# (an asynchronous assert under torch.compile, tracing and on another device; under vmap or grad
# an index out of bounds exactly when an entry breaks the sign, run eagerly). NaN passes no test.
SIGNS_HOLD = '''def signs_hold(x, test):
    """Whether every entry of ``x`` passes ``test``, one of "> 0", ">= 0", "< 0" and "<= 0" (NaN
    passes none); raises a RuntimeError itself where no value may decide a branch
    (``torch.compile``, tracing, another device)."""
    if x.numel() == 0:
        return True
    if torch._C._are_functorch_transforms_active():  # vmap, grad: no assert is batched
        return transformed_signs_hold(x, test)
    if x.device.type == "cpu" and type(x) is torch.Tensor \\
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing() \\
            and torch.utils._python_dispatch._get_current_dispatch_mode() is None:
        extreme = x.detach().amin() if test[0] == ">" else x.detach().amax()
        return bool(sign_test(extreme, test))
    torch._assert_async(sign_test(x, test).all(), "an input breaks its declared sign")
    return True


def sign_test(x, test):
    """``x`` compared with 0 as ``test`` says, entry by entry."""
    return x > 0 if test == "> 0" else x >= 0 if test == ">= 0" else x < 0 if test == "< 0" \\
        else x <= 0


@torch.compiler.disable
def transformed_signs_hold(x, test):
    """``signs_hold`` under vmap or grad: an index out of bounds exactly when an entry fails."""
    try:
        x.new_zeros(1)[(~sign_test(x, test)).any().long().reshape(1)]
    except IndexError:
        return False
    return True'''


# The helpers NumPy prints a ``Conv`` as (torch has the kernels). The windows of a correlation are
# a strided view of its input (no copy), contracted by one tensordot (a BLAS matrix product of the
# im2col matrix that tensordot makes); the transposed convolution is the correlation of the input
# spread ``stride`` apart and padded by the kernel's reach with the kernel flipped:
# ``sum_q,k g[q]*w[k]*[l == s*q + d*k]``, read at ``l`` as ``sum_k spread[l - d*k]*w[k]``.
CONV = '''def conv(x, w, stride, dilation):
    """torch's convolution without padding, bias or groups: ``x`` (N, C, *L) correlated with
    ``w`` (O, C, *K), outputs ``stride`` apart, the kernel's taps ``dilation`` apart: (N, O, *Q)."""
    d = w.ndim - 2
    spatial = tuple(range(2, 2 + d))
    reach = tuple(dl * (k - 1) + 1 for k, dl in zip(w.shape[2:], dilation))
    windows = np.lib.stride_tricks.sliding_window_view(x, reach, axis=spatial)
    windows = windows[(slice(None),) * 2 + tuple(slice(None, None, s) for s in stride)
                      + tuple(slice(None, None, dl) for dl in dilation)]
    out = np.tensordot(windows, w, axes=((1,) + tuple(range(2 + d, 2 + 2 * d)), (1,) + spatial))
    return np.moveaxis(out, -1, 1)'''

CONV_TRANSPOSE = '''def conv_transpose(g, w, stride, dilation):
    """torch's transposed convolution without padding, bias or groups: ``g`` (N, C, *Q) spread
    through ``w`` (C, O, *K): (N, O, *((Q - 1)*stride + (K - 1)*dilation + 1))."""
    d = w.ndim - 2
    spatial = tuple(range(2, 2 + d))
    spread = np.zeros(g.shape[:2] + tuple((q - 1) * s + 1 for q, s in zip(g.shape[2:], stride)),
                      dtype=g.dtype)
    spread[(slice(None),) * 2 + tuple(slice(None, None, s) for s in stride)] = g
    reach = [(dl * (k - 1),) * 2 for k, dl in zip(w.shape[2:], dilation)]
    padded = np.pad(spread, [(0, 0), (0, 0)] + reach)
    return conv(padded, np.flip(w, spatial).swapaxes(0, 1), (1,) * d, dilation)'''

# The adjoint in a convolution's kernel: ``dw[o, c, k] = sum_n,q g[n, o, q]*x[n, c, s*q + d*k]``,
# the correlation of ``x`` with ``g``, their batch axis as the channels (stride ``d``, dilation
# ``s``). NumPy makes it so; torch (``aten_conv_weight``) calls ATen's weight-gradient kernel,
# which reads the kernel's
# shape from a weight argument (an uninitialised array of that shape) and is about 3x faster
# than the correlation with roles swapped (n=32, C=O=64, P=256, U=3, one thread).
CONV_WEIGHT_NUMPY = '''def conv_weight(g, x, stride, dilation):
    """The adjoint in the kernel of ``conv(x, w, stride, dilation)`` given the output's adjoint
    ``g`` (N, O, *Q) and the input ``x`` (N, C, *L): (O, C, *K)."""
    return conv(x.swapaxes(0, 1), g.swapaxes(0, 1), dilation, stride).swapaxes(0, 1)'''

CONV_WEIGHT_TORCH = '''def aten_conv_weight(g, x, stride, dilation):
    """The adjoint in the kernel of ``F.conv{d}d(x, w, stride=stride, dilation=dilation)`` given
    the output's adjoint ``g`` (N, O, *Q) and the input ``x`` (N, C, *L): (O, C, *K)."""
    taps = [(length - (q - 1) * s - 1) // d + 1
            for length, q, s, d in zip(x.shape[2:], g.shape[2:], stride, dilation)]
    shape = x.new_empty((g.shape[1], x.shape[1], *taps))  # read for its shape alone
    zeros = [0] * len(taps)
    return torch.ops.aten.convolution_backward(g, x, shape, None, list(stride), zeros,
                                               list(dilation), False, zeros, 1,
                                               [False, True, False])[1]'''


# What NumPy prints ``AxisScatterAdd`` as: ``np.add.at`` with every other axis indexed by its own
# arange (an open mesh, broadcast against ``index``), so repeated positions add up.
ADD_ALONG = '''def add_along(x, axis, index, values):
    """Add each of ``values`` to ``x`` along ``axis`` at the position ``index`` gives it, every
    other axis where the value is (``index`` and ``values`` of one shape)."""
    where = list(np.ix_(*[np.arange(size) for size in index.shape]))
    where[axis] = index
    np.add.at(x, tuple(where), values)'''


# torch's Python ``Function.apply`` binds forward's default arguments through ``inspect`` on every
# call (about 20 us: a fifth of a small layer's forward and backward) and unwraps tensors that
# outlived a functorch transform, then calls the C++ apply, which runs ``forward`` and
# ``setup_context``. The emitted calls pass every argument, so where no transform is active and
# nothing is being compiled (dynamo traces ``Function.apply`` itself) the C++ apply is called
# directly after the same unwrapping; in a torch without these names, ``Function.apply``.
FUNCTION_APPLY = '''CPP_APPLY = getattr(getattr(torch._C, "_FunctionBase", None), "__dict__", {}).get("apply")


def function_apply(function, *args):
    """``function.apply(*args)``, every argument given: the C++ apply where nothing needs the
    Python ``Function.apply`` around it (no functorch transform, no compilation)."""
    if CPP_APPLY is None or torch.compiler.is_compiling() \\
            or torch._C._are_functorch_transforms_active():
        return function.apply(*args)
    unwrap, unwrapped = torch._C._functorch.unwrap_if_dead, []
    for arg in args:  # over the arguments: a tensor that outlived a transform, unwrapped
        unwrapped.append(unwrap(arg) if isinstance(arg, torch.Tensor) else arg)
    return CPP_APPLY.__get__(None, function)(*unwrapped)'''


def helpers(text: str, target: str) -> list[str]:
    """The source of the helpers that the emitted module ``text`` calls, in a fixed order."""
    called = [QUOTIENT] * ("quotient(" in text)
    weight = re.search(r"\b(aten_)?conv_weight\(", text) is not None
    if target == "numpy":
        spread = re.search(r"\bconv_transpose\(", text) is not None
        called += [CONV] * (spread or weight or re.search(r"\bconv\(", text) is not None) \
            + [CONV_TRANSPOSE] * spread + [CONV_WEIGHT_NUMPY] * weight \
            + [ADD_ALONG] * (re.search(r"\badd_along\(", text) is not None)
    else:
        called += [CONV_WEIGHT_TORCH] * weight
    if target == "torch":
        dot = "leading_dot(" in text
        called += [LEADING_SUMS] * (dot or "leading_sums(" in text) + [LEADING_DOT] * dot \
            + [LOG_SOFTMAX_AT] * ("log_softmax_at(" in text) \
            + [FUNCTION_APPLY] * ("function_apply(" in text)
    return called + [LABELS_IN_RANGE] * ("labels_in_range(" in text) \
        + [SIGNS_HOLD] * ("signs_hold(" in text)
