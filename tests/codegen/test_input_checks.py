"""The input checks emitted modules start with (symderive/input_checks.py): labels and declared
signs here, eagerly and under vmap, grad and torch.compile; shapes and constants are exercised
through the committed modules in test_function.py."""
import re

import numpy as np
import pytest
import torch
from sympy import Idx, IndexedBase, KroneckerDelta, Sum, symbols

from symderive import Builder, normal
from symderive.api import emit


@pytest.mark.parametrize("target", ["torch", "numpy"])
def test_each_label_is_bounded_where_its_classes_can_be_read(target):
    """``Y`` meets a one-hot comparison (a label out of range gave a row of zeros, no error);
    ``U``'s number of classes no input's shape holds (declared, never read), so it is checked
    for sign and type alone, and that does not lift ``Y``'s upper bound. int32 labels work
    where ``F.one_hot`` takes int64 alone."""
    n, K, V = symbols("n K V", integer=True, positive=True)
    i, c = Idx("i", n), Idx("c", V)
    z, Y, U, q = symbols("z Y U q", cls=IndexedBase)
    loss = symbols("loss")
    builder = Builder("two_labels", sizes={n: 4, K: 3, V: 5})
    builder.input(z[i, c], normal())
    builder.labels(Y[i], V)
    builder.labels(U[i], K)
    builder[q[i, c]] = z[i, c] * (1 + KroneckerDelta(c, Y[i]))
    builder[loss] = Sum(Sum(q[i, c] ** 2, c), i)
    builder.loss(loss)
    namespace = {}
    exec(emit(builder.build(), target).source, namespace)
    forward = namespace["forward"]
    array = torch.tensor if target == "torch" else np.array
    numbers = np.random.default_rng(0).normal(size=(4, 5))
    values = array(numbers)
    good, unread = array([0, 1, 2, 4]), array([0, 1, 7, 2])  # 7: no size says it is too large
    expected = float(((numbers * (1 + np.eye(5)[[0, 1, 2, 4]])) ** 2).sum())
    assert float(forward(values, good, unread)["loss"]) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"^two_labels: labels Y must lie in range\(5\); some"):
        forward(values, array([0, 1, 2, 5]), unread)
    with pytest.raises(ValueError, match="^two_labels: labels U must not be negative$"):
        forward(values, good, array([0, -1, 1, 2]))
    with pytest.raises(ValueError, match="^two_labels: labels U must be"):
        forward(values, good, array([0.0, 1.0, 1.0, 2.0]))
    if target == "torch":
        assert float(forward(values, good.int(), unread.int())["loss"]) == pytest.approx(expected)
        with pytest.raises(ValueError, match="^two_labels: labels Y must be a tensor of int64 or "
                                             "int32, not ndarray of int64$"):
            forward(values, good.numpy(), unread)


def positive_logits():
    """makemore's cross-entropy over logits declared positive: the torch module has a
    ``lean_forward`` besides ``forward``, and a label check to run beside the sign check."""
    from sympy import Symbol, exp, log

    from symderive import Maximum, uniform

    n, V = symbols("n V", integer=True, positive=True)
    i, c = Idx("i", n), Idx("c", V)
    logits = IndexedBase("logits", positive=True)
    Y, maxes, norm, counts, total, inverse, probs, logprobs = symbols(
        "Y maxes norm counts total inverse probs logprobs", cls=IndexedBase)
    loss = Symbol("loss")
    b = Builder("positive", sizes={n: 4, V: 5})
    b.input(logits[i, c], uniform(0.5, 2.0))
    b.labels(Y[i], V)
    b[maxes[i]] = Maximum(logits[i, c], c)
    b[norm[i, c]] = logits[i, c] - maxes[i]
    b[counts[i, c]] = exp(norm[i, c])
    b[total[i]] = Sum(counts[i, c], c)
    b[inverse[i]] = total[i] ** -1
    b[probs[i, c]] = counts[i, c] * inverse[i]
    b[logprobs[i, c]] = log(probs[i, c])
    b[loss] = -Sum(logprobs[i, Y[i]], i) / n
    b.loss(loss)
    return b.build()


POSITIVE = "positive: input logits must be > 0 (declared positive; the derivation relies on it), " \
    "some entries are not"


@pytest.fixture(scope="module")
def positive_modules():
    import sys
    import types

    program = positive_logits()
    modules = {}
    for target in ("torch", "numpy"):
        module = types.ModuleType(f"positive_{target}")
        exec(emit(program, target).source, module.__dict__)
        sys.modules[module.__name__] = module  # torch.compile finds functions by module
        modules[target] = module
    return modules


def test_an_input_declared_positive_is_checked_by_every_function_taking_it(positive_modules):
    """A negative or NaN entry is one ValueError in forward, lean_forward and the Function (the
    entry point) of the torch module and in the NumPy forward; positive values run."""
    torch_module, numpy_module = positive_modules["torch"], positive_modules["numpy"]
    labels = torch.tensor([0, 1, 2, 4])
    good = torch.rand(4, 5, dtype=torch.float64) + 0.5
    calls = [torch_module.forward, torch_module.lean_forward, torch_module.positive]
    for value in (-1.0, 0.0, float("nan")):
        bad = good.clone()
        bad[2, 3] = value
        for call in calls:
            with pytest.raises(ValueError, match=f"^{re.escape(POSITIVE)}$"):
                call(bad, labels)
        with pytest.raises(ValueError, match=f"^{re.escape(POSITIVE)}$"):
            numpy_module.forward(bad.numpy(), labels.numpy())
    expected = torch.nn.functional.cross_entropy(good, labels)
    for call in calls:
        result = call(good.requires_grad_(), labels)
        torch.testing.assert_close(result if call is calls[-1] else result["loss"], expected)
    torch.testing.assert_close(torch.as_tensor(numpy_module.forward(
        good.detach().numpy(), labels.numpy())["loss"]), expected)


def test_the_sign_check_holds_where_no_value_may_decide_a_branch(positive_modules):
    """Under vmap, grad and torch.compile the test cannot branch on a value; a negative entry is
    still refused, and positive values give F.cross_entropy's loss and gradient."""
    module = positive_modules["torch"]
    logits = torch.rand(2, 4, 5, dtype=torch.float64) + 0.5
    bad = logits.clone()
    bad[1, 0, 0] = -1.0
    labels = torch.tensor([[0, 1, 2, 4], [1, 1, 1, 1]])
    F = torch.nn.functional
    batched = torch.func.vmap(module.positive)
    expected = torch.stack([F.cross_entropy(a, b) for a, b in zip(logits, labels)])
    torch.testing.assert_close(batched(logits, labels), expected)
    with pytest.raises(ValueError, match=re.escape(POSITIVE)):
        batched(bad, labels)
    per_sample = torch.func.vmap(torch.func.grad(module.positive))
    torch.testing.assert_close(per_sample(logits, labels),
                               torch.func.vmap(torch.func.grad(F.cross_entropy))(logits, labels))
    with pytest.raises(ValueError, match=re.escape(POSITIVE)):
        per_sample(bad, labels)
    compiled = torch.compile(module.forward, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(logits[0], labels[0])["loss"], expected[0])
    with pytest.raises(RuntimeError, match="an input breaks its declared sign"):
        compiled(bad[1], labels[1])
    run = module.compiled(backend="aot_eager")
    torch.testing.assert_close(run(logits[0], labels[0]), expected[0])
    with pytest.raises((ValueError, RuntimeError), match="must be > 0|declared sign"):
        run(bad[1], labels[1])
    assert module.signs_hold(torch.tensor([1.0, 2.0]), "> 0")
    assert not module.signs_hold(torch.tensor([0.0, 2.0]), "> 0")
    assert module.signs_hold(torch.tensor([0.0, 2.0]), ">= 0")
    assert module.signs_hold(torch.tensor([], dtype=torch.float64), "> 0")
