"""sigmoid focal loss (gamma = 2): the binary cross-entropy with logits weighted by (1 - p_t)**2,
p_t the probability of the target class, the mean (torchvision's sigmoid_focal_loss, alpha off)."""
import torch
import torch.nn.functional as F
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, normal, sigmoid, softplus, uniform

n, d = symbols("n d", integer=True, positive=True)
i, j = Idx("i", n), Idx("j", d)
x, t, p, q = symbols("x t p q", cls=IndexedBase)
loss = symbols("loss")


def reference(x, t):
    p = torch.sigmoid(x)
    q = p * t + (1 - p) * (1 - t)
    return (F.binary_cross_entropy_with_logits(x, t, reduction="none") * (1 - q) ** 2).mean()


b = Builder("focal_loss", sizes={n: 8, d: 16})
b.input(x[i, j], normal(2.0))
b.input(t[i, j], uniform(0.0, 1.0))
b[p[i, j]] = sigmoid(x[i, j])
b[q[i, j]] = p[i, j]*t[i, j] + (1 - p[i, j])*(1 - t[i, j])
b[loss] = Sum(Sum((softplus(x[i, j]) - t[i, j]*x[i, j])*(1 - q[i, j])**2, i), j) / (n*d)
b.loss(loss)
b.reference("torchvision-style sigmoid focal loss", reference)
program = b.build()

# the textbook gradient dL/dx as a plain expression, for the README's table, which counts its
# ops as it counts the derived gradient's
TEXTBOOK = ((p[i, j] - t[i, j])*(1 - q[i, j])**2 - 2*(1 - q[i, j])*(2*t[i, j] - 1)*p[i, j]*(
    1 - p[i, j])*(softplus(x[i, j]) - t[i, j]*x[i, j]))/(n*d)
