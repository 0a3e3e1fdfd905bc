"""glu: the first half of each row gated by the sigmoid of the second half, F.glu(x, dim=1); the
derivation is examples/layers/glu.py's (x of width 2*H read as x[i, j] and x[i, j + H])."""
from pathlib import Path

from sympy import Idx, IndexedBase, KroneckerDelta, Sum, symbols

from symderive import load, sigmoid

program = load(Path(__file__).parent.parent / "layers" / "glu.py")

n, H = symbols("n H", integer=True, positive=True)
i, j, l = Idx("i", n), Idx("j", H), Idx("l", 2 * H)
x, dy = symbols("x dy", cls=IndexedBase)

# the textbook gradient dL/dx as a plain expression (dy: the upstream adjoint), for the
# README's table, which counts its ops as it counts the derived gradient's: the gate g = sigmoid
# of the second half, dy*g into the first half and dy*a*g*(1 - g) into the second
g = sigmoid(x[i, j + H])
TEXTBOOK = (Sum(KroneckerDelta(j, l)*dy[i, j]*g, j)
            + Sum(KroneckerDelta(j + H, l)*dy[i, j]*x[i, j]*g*(1 - g), j))
