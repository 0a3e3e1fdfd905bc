"""The input checks emitted modules start with (symderive/input_checks.py): labels here; shapes
and constants are exercised through the committed modules in test_function.py."""
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
