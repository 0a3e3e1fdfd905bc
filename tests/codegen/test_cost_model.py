"""The rank bound of issue 21: the backward as lowered makes no array of higher rank than the
forward holds, for every derivation and example (their double backwards too, where derived),
read off the lowered code by ``widest_arrays``."""
import pytest
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder
from symderive.algebra.double import derive_double
from symderive.algebra.simplify import derive_backward
from symderive.codegen.arrays import ArrayRef, MatMul, NewAxes, SumAxes
from symderive.codegen.cost_model import Costs, widest_arrays
from symderive.program.load import load

from ..conftest import ROOT

FILES = sorted(p.relative_to(ROOT).as_posix() for folder in ("derivations", "examples/layers",
                                                               "examples/activations")
               for p in (ROOT / folder).glob("*.py")
               if not p.stem.startswith("_") and p.stem != "table")


def matrices():
    n, d, m = symbols("n d m", integer=True, positive=True)
    i, k, j = Idx("i", n), Idx("k", d), Idx("j", m)
    a, b, c = IndexedBase("a"), IndexedBase("b"), IndexedBase("c")
    builder = Builder("outer", sizes={n: 2, d: 3, m: 4})
    builder.input(a[i, k])
    builder.input(b[k, j])
    builder[c[i, j]] = Sum(a[i, k] * b[k, j], k)
    builder.output(c)
    return builder.build()


def test_an_outer_product_summed_back_is_a_rank_3_array_and_a_matmul_is_not():
    costs = Costs((matrices(),))
    a, b = ArrayRef("a"), ArrayRef("b")
    outer = SumAxes(NewAxes(a, (0, 0, 1)) * NewAxes(b, (1, 0, 0)), (1,), 3)
    assert costs(outer) == costs(MatMul(a, b))  # the same (n, m) result
    assert costs.widest(outer) == 3
    assert costs.widest(MatMul(a, b)) == 2
    assert costs.widest(NewAxes(a, (0, 0, 1))) == 0  # a view makes nothing


@pytest.mark.parametrize("path", FILES)
def test_the_backward_makes_no_array_of_higher_rank_than_the_forward(path):
    program = load(ROOT / path)
    backward = derive_backward(program)
    widest = widest_arrays(program, backward)
    assert 0 < widest["forward"] and widest["backward"] <= widest["forward"], widest
    if path.startswith("examples/activations"):
        return  # elementwise: their double backwards are elementwise too
    double = derive_double(program, backward)
    if isinstance(double, str):  # none derived (max pooling, a gradient program): said why
        return
    widest = widest_arrays(double.program, double.backward)
    assert widest["backward"] <= widest["forward"], widest
