"""GLU: the first half of each row gated by the sigmoid of the second half,
``y[i, j] = x[i, j]*sigmoid(x[i, j + H])`` over an input of width ``2*H`` (``F.glu(x, dim=1)``).
The two reads are slices; each adjoint pads its half back into the full width."""
import torch.nn.functional as F
from sympy import Idx, IndexedBase, symbols

from symderive import Builder, normal, sigmoid

n, H = symbols("n H", integer=True, positive=True)
i, j, l = Idx("i", n), Idx("j", H), Idx("l", 2 * H)
x, y = symbols("x y", cls=IndexedBase)

glu = Builder("glu", sizes={n: 8, H: 6})
glu.input(x[i, l], normal(1.0))
glu[y[i, j]] = x[i, j] * sigmoid(x[i, j + H])
glu.output(y)
glu.reference("F.glu", lambda x: F.glu(x, dim=1))
program = glu.build()
