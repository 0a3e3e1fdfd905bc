"""The emitted autograd Function: gradcheck and gradgradcheck (the derived double backward) on the
committed modules and on every layer derivation, ``torch.func.grad`` and ``vmap``, gradients only
where ``needs_input_grad`` asks, shape and label checks (under vmap and torch.compile too),
constants as keyword arguments, the saved tensors, and ``compiled()`` with its fallback."""
import importlib.util
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from symderive.algebra.simplify import derive_backward
from symderive.codegen.emit import module_source
from symderive.program.load import load
from symderive.verify.check import example_inputs, load_module

ROOT = Path(__file__).resolve().parent.parent.parent
LAYERS = sorted([*ROOT.glob("derivations/*.py"), *ROOT.glob("examples/layers/*.py")])
# derivations whose Function stays once differentiable, and the reason it gives
# makemore_mlp_layers is twice differentiable since its flattened embedding read's adjoint
# lowers (a reshape, lower.Lowerer.flattened)
ONCE = {"makemore_mlp": "adjoints='all'",  # asks for the atomic chain, not a compact backward
        # its backward reads the window's argmax; a program with ArgMax is not derived again
        "max_pool": "'ArgMax' is not supported", "max_pool_overlap": "'ArgMax' is not supported",
        "gpt": "double=False"}  # asks for none: the whole model's would slow every regen


def import_file(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small(program, size=3):
    return replace(program, sizes=tuple((s, min(v, size)) for s, v in program.sizes))


def leaves_of(program, seed=0):
    inputs = example_inputs(small(program), torch.float64, seed)
    return [x.clone().requires_grad_(x.is_floating_point()) for x in inputs.values()]


@pytest.mark.parametrize("name", ["batchnorm", "layernorm", "cross_entropy"])
def test_gradgradcheck_on_the_committed_functions(root, name):
    module = import_file(root / "generated" / f"{name}_torch.py")
    leaves = leaves_of(load(root / "derivations" / f"{name}.py"))
    entry = getattr(module, name)
    assert torch.autograd.gradcheck(entry, leaves)
    assert torch.autograd.gradgradcheck(entry, leaves)


@pytest.mark.parametrize("path", LAYERS, ids=[p.stem for p in LAYERS])
def test_every_layer_is_twice_differentiable_or_says_why(path):
    program = load(path)  # derived at its own sizes (as regen does: derivations are cached)
    source = module_source(program, derive_backward(program), "torch")
    module = load_module(source, f"{program.name}_twice")
    leaves = leaves_of(program)
    entry = getattr(module, program.name)
    assert torch.autograd.gradcheck(entry, leaves)
    if program.name in ONCE:
        assert not hasattr(module, "double_backward") and ONCE[program.name] in source
        outputs = entry(*leaves)
        floats = [x for x in leaves if x.requires_grad]
        # an upstream adjoint that requires grad, as once_differentiable needs to see the error
        grads = torch.autograd.grad(outputs.pow(2).sum(), floats, create_graph=True)
        with pytest.raises(RuntimeError, match="differentiate twice"):
            sum(g.sum() for g in grads).backward()
    else:
        assert hasattr(module, "double_backward")
        assert torch.autograd.gradgradcheck(entry, leaves)


@pytest.fixture(scope="module")
def batchnorm(root):
    return import_file(root / "generated" / "batchnorm_torch.py")


def reference(x, gain, bias, eps=1e-5):
    return gain * (x - x.mean(0)) / (x.var(0) + eps).sqrt() + bias


def example(seed=0, n=6, h=5):
    generator = torch.Generator().manual_seed(seed)
    x, gain, bias, dy = (torch.randn(shape, generator=generator, dtype=torch.float64)
                         for shape in ((n, h), (h,), (h,), (n, h)))
    return x, gain, bias, dy


def test_torch_func_grad_through_the_function_equals_autograd(batchnorm):
    x, gain, bias, dy = example()

    def loss(f):
        return lambda x, gain, bias: (f(x, gain, bias) * dy).sum()

    ours = torch.func.grad(loss(batchnorm.batchnorm), argnums=(0, 1, 2))(x, gain, bias)
    theirs = torch.func.grad(loss(reference), argnums=(0, 1, 2))(x, gain, bias)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # and twice: the derived double backward under torch.func
    twice = torch.func.grad(lambda x: torch.func.grad(loss(batchnorm.batchnorm))(
        x, gain, bias).pow(2).sum())(x)
    expected = torch.func.grad(lambda x: torch.func.grad(loss(reference))(
        x, gain, bias).pow(2).sum())(x)
    torch.testing.assert_close(twice, expected, rtol=1e-10, atol=1e-12)


def test_vmap_over_a_batch_of_inputs(batchnorm):
    x, gain, bias, dy = example()
    xs = torch.stack([x, 2 * x + 1, x.flip(0)])
    ours = torch.func.vmap(batchnorm.batchnorm, in_dims=(0, None, None))(xs, gain, bias)
    torch.testing.assert_close(ours, torch.stack([reference(v, gain, bias) for v in xs]))
    grads = torch.func.vmap(torch.func.grad(lambda x: (batchnorm.batchnorm(x, gain, bias) * dy)
                                            .sum()))(xs)
    expected = torch.func.vmap(torch.func.grad(lambda x: (reference(x, gain, bias) * dy)
                                               .sum()))(xs)
    torch.testing.assert_close(grads, expected)


def test_the_entry_point_calls_the_cpp_apply_and_agrees_with_function_apply(batchnorm,
                                                                            monkeypatch):
    """Outside transforms and compilation the entry point calls the C++ apply itself (no
    ``inspect`` binding); its values, gradients and double backward are Function.apply's, and
    in a torch without the C++ apply it is Function.apply."""
    x, gain, bias, dy = example()
    calls = []
    monkeypatch.setattr(batchnorm.BatchnormFunction, "apply",
                        classmethod(lambda cls, *args: calls.append(cls) or
                                    torch.autograd.Function.apply.__func__(cls, *args)))

    def results():
        leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
        y = batchnorm.batchnorm(*leaves)
        first = torch.autograd.grad((y * dy).sum(), leaves, create_graph=True)
        second = torch.autograd.grad(first[0].pow(2).sum(), leaves)
        return [y, *first, *second]

    direct = results()
    assert calls == []  # Function.apply was not called
    monkeypatch.setattr(batchnorm, "CPP_APPLY", None)
    through_apply = results()
    assert calls == [batchnorm.BatchnormFunction]
    for a, b in zip(direct, through_apply):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
    expected = torch.autograd.grad((reference(*leaves) * dy).sum(), leaves)
    for a, b in zip(direct[1:4], expected):
        torch.testing.assert_close(a, b)


def test_only_the_gradients_asked_for_are_computed(batchnorm):
    x, gain, bias, dy = example()
    values = batchnorm.forward(x, gain, bias)
    some = batchnorm.backward(values, dy, wanted={"bnbias"})
    assert some["hprebn"] is None and some["bngain"] is None
    torch.testing.assert_close(some["bnbias"], dy.sum(0))
    x.requires_grad_()
    (reference_x,) = torch.autograd.grad((reference(x, gain, bias) * dy).sum(), x)
    (ours,) = torch.autograd.grad((batchnorm.batchnorm(x, gain, bias) * dy).sum(), x)
    torch.testing.assert_close(ours, reference_x)
    assert gain.grad is None and bias.grad is None


def test_a_wrong_shape_is_one_line_naming_the_input(batchnorm):
    x, gain, bias, _ = example()
    with pytest.raises(ValueError, match=r"^batchnorm: input hprebn has shape \(2, 6, 5\); "
                                         r"expected \(n, H\)$"):
        batchnorm.batchnorm(x.expand(2, 6, 5), gain, bias)
    with pytest.raises(ValueError, match=r"^batchnorm: input bnbias has shape \(4,\); "
                                         r"expected \(H,\) = \(5,\)$"):
        batchnorm.forward(x, gain, bias[:4])


def test_constants_are_keyword_arguments(batchnorm):
    x, gain, bias, dy = example()
    assert batchnorm.CONSTANTS == ("eps",) and batchnorm.eps == 1e-5
    torch.testing.assert_close(batchnorm.batchnorm(x, gain, bias, eps=0.5),
                               reference(x, gain, bias, eps=0.5))
    leaves = [t.clone().requires_grad_() for t in (x, gain, bias)]
    ours = torch.autograd.grad((batchnorm.BatchnormFunction.apply(*leaves, 0.5)[0] * dy).sum(),
                               leaves)
    theirs = torch.autograd.grad((reference(*leaves, eps=0.5) * dy).sum(), leaves)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_the_function_saves_what_its_backwards_read(batchnorm):
    """The first-order backward reads SAVED; the inputs are saved as references (no copies) for
    the double backward, and nothing else."""
    x, gain, bias, _ = example()
    x.requires_grad_()
    out = batchnorm.batchnorm(x, gain, bias)
    assert isinstance(out, torch.Tensor)  # saved intermediates are not the entry point's output
    assert set(batchnorm.SAVED) == {"bngain", "bnvar_inv", "bnraw"}
    assert batchnorm.FUNCTION_SAVED == batchnorm.SAVED + ("hprebn", "bnbias")
    saved = out.grad_fn.saved_tensors
    assert len(saved) == len(batchnorm.FUNCTION_SAVED)
    assert saved[batchnorm.FUNCTION_SAVED.index("hprebn")].data_ptr() == x.data_ptr()


def _compiled_numbers(batchnorm, **options):
    x, gain, bias, dy = example()
    leaves = [t.float().requires_grad_() for t in (x, gain, bias)]
    run = batchnorm.compiled(**options)
    out = run(*leaves)
    grads = torch.autograd.grad((out * dy.float()).sum(), leaves)
    plain = batchnorm.batchnorm(*leaves)
    expected = torch.autograd.grad((plain * dy.float()).sum(), leaves)
    torch.testing.assert_close(out, plain)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)
    return run


def test_compiled_gives_the_plain_module_s_numbers(batchnorm):
    """One small case through torch.compile's tracing (the aot_eager backend: inductor's C++
    build takes a minute); where compilation is unavailable, the fallback must say so."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _compiled_numbers(batchnorm, backend="aot_eager")
    compiled_ok = not [w for w in caught if "torch.compile" in str(w.message)]
    if not compiled_ok:  # no dynamo on this machine: the warning is the fallback path
        assert any("running the plain module" in str(w.message) for w in caught)


def test_compiled_falls_back_with_a_warning(batchnorm):
    def broken(graph, example_inputs):
        raise RuntimeError("no compiler here")

    with pytest.warns(UserWarning, match="(?s)torch.compile failed .*running the plain module"):
        run = _compiled_numbers(batchnorm, backend=broken)
    x, gain, bias, _ = example()
    with pytest.raises(ValueError, match="input hprebn has shape"):  # not hidden by the fallback
        run(x[0], gain, bias)
    with pytest.warns(UserWarning, match="torch.compile is unavailable"):
        _compiled_numbers(batchnorm, backend="no_such_backend")


@pytest.fixture(scope="module")
def cross_entropy(root):
    module = import_file(root / "generated" / "cross_entropy_torch.py")
    sys.modules.setdefault(module.__name__, module)  # torch.compile finds functions by module
    return module


NOT_INTEGERS = "must be a tensor of int64 or int32, not Tensor of torch."
BAD_LABELS = [([0, -1, 2, 4], "must lie in range\\(5\\)"),  # indexing would read the last class
              ([0, 1, 2, 5], "must lie in range\\(5\\)"),
              ([0.0, 1.0, 2.0, 4.0], NOT_INTEGERS + "float32"),
              ([True, False, True, True], NOT_INTEGERS + "bool")]


@pytest.mark.parametrize("labels, message", BAD_LABELS)
def test_a_bad_label_is_a_one_line_error_not_a_wrong_loss(cross_entropy, labels, message):
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor(labels)
    for call in (cross_entropy.cross_entropy, cross_entropy.forward, cross_entropy.lean_forward):
        with pytest.raises(ValueError, match=f"^cross_entropy: labels Y {message}"):
            call(logits, labels)
    numpy = import_file(ROOT / "generated" / "cross_entropy_numpy.py")
    numpy_message = message.replace("a tensor of int64 or int32", "integers").replace(
        "Tensor of torch.", "ndarray of ")
    with pytest.raises(ValueError, match=f"^cross_entropy: labels Y {numpy_message}"):
        numpy.forward(logits.detach().numpy(), labels.numpy())


def test_labels_are_checked_where_no_value_may_decide_a_branch(cross_entropy):
    """Under vmap and torch.compile the range test cannot branch on a value; it must still
    refuse -1 rather than read the last class, and int32 labels give F.cross_entropy's loss."""
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    good = torch.tensor([[0, 1, 2, 4], [1, 1, 1, 1]])
    bad = torch.tensor([[0, 1, 2, 4], [1, -1, 1, 1]])
    batched = torch.func.vmap(cross_entropy.cross_entropy)
    expected = torch.stack([F.cross_entropy(a, b) for a, b in zip(logits, good)])
    torch.testing.assert_close(batched(logits, good), expected)
    with pytest.raises(ValueError, match="labels Y must lie in range"):
        batched(logits, bad)
    compiled_batched = torch.compile(batched, backend="aot_eager")  # the check breaks the graph
    torch.testing.assert_close(compiled_batched(logits, good), expected)
    with pytest.raises(ValueError, match="labels Y must lie in range"):
        compiled_batched(logits, bad)
    per_sample = torch.func.vmap(torch.func.grad(cross_entropy.cross_entropy))
    torch.testing.assert_close(per_sample(logits, good), torch.func.vmap(torch.func.grad(
        F.cross_entropy))(logits, good))
    with pytest.raises(ValueError, match="labels Y must lie in range"):
        per_sample(logits, bad)
    run = cross_entropy.compiled(backend="aot_eager")
    torch.testing.assert_close(run(logits[0], good[0].int()), expected[0])
    with pytest.raises((ValueError, RuntimeError), match="labels.* out of range|must lie in range"):
        run(logits[0], bad[1])
    assert cross_entropy.labels_in_range(torch.tensor([0, 4]), 5)
    assert not cross_entropy.labels_in_range(torch.tensor([0, 5]), 5)
    assert cross_entropy.labels_in_range(torch.tensor([], dtype=torch.int64), 5)
