"""``Builder.include`` places a layer where its sizes differ (``sizes=``) and several times under
one program (``prefix=``): the ranges follow the host's sizes, one label names one range, and
what cannot be placed is refused in words."""
import pytest
import sympy as sp
from sympy import Idx, IndexedBase, Sum, symbols

from symderive import Builder, ProgramError

n, T, H, P = symbols("n T H P", integer=True, positive=True)
x, y, z, mean, out = symbols("x y z mean out", cls=IndexedBase)


def _layer():
    """A centring layer over a batch and ``T`` positions."""
    i, t, j = Idx("i", n), Idx("t", T), Idx("j", H)
    layer = Builder("centre", sizes={n: 2, T: 3, H: 4})
    layer.input(x[i, t, j])
    layer[mean[j]] = Sum(x[i, t, j], i, t) / (n * T)
    layer[y[i, t, j]] = x[i, t, j] - mean[j]
    layer.output(y)
    return layer.build()


def _host(**include):
    i, p, j = Idx("i", n), Idx("p", 2 * P), Idx("j", H)
    host = Builder("host", sizes={n: 2, P: 2, H: 4})
    host.input(z[i, p, j])
    host.include(_layer(), x="z", **include)
    return host


def test_sizes_move_the_layers_ranges_onto_the_hosts_index():
    host = _host(sizes={"T": 2 * P}, prefix="c1_", y="out")
    host.output(out)
    program = host.build()
    mean_statement = next(s for s in program.body if str(s.lhs.base.label) == "c1_mean")
    assert sp.fraction(sp.together(mean_statement.rhs))[1] == 2 * P * n  # the size, symbolic
    labels = {str(index.label): index.upper for s in program.body for index in
              s.lhs.atoms(Idx) | s.rhs.atoms(Idx)}
    assert labels["p"] == 2 * P - 1 and "t" not in labels  # the host's p, not a second 't'


def test_a_prefix_lets_a_layer_be_included_twice():
    host = _host(sizes={"T": 2 * P}, prefix="a_", y="first")
    host.include(_layer(), sizes={"T": 2 * P}, prefix="b_", x="first", y="out")
    host.output(out)
    names = [str(s.lhs.base.label) for s in host.build().body]
    assert names == ["a_mean", "first", "b_mean", "out"]


def test_a_range_with_no_host_index_gets_a_fresh_label():
    host = _host(sizes={"T": 3 * P}, prefix="c_")  # z has 2*P positions: not this layer's
    with pytest.raises(ProgramError):  # the layer then reads z over a range z does not have
        host.output(IndexedBase("c_y"))
        host.build()
    index = next(i for s in host.body for i in s.rhs.atoms(Idx) if i.upper == 3 * P - 1)
    assert str(index.label) == "t1"


@pytest.mark.parametrize("options, words", [
    ({"sizes": {"Q": P}}, "not one of the layer's sizes"),
    ({"sizes": {"T": sp.Symbol("K", integer=True)}}, "in this program's sizes"),
    ({"sizes": [("T", P)]}, "must be a dict"),
    ({"prefix": "1bad"}, "must start a Python identifier"),
])
def test_what_cannot_be_placed_is_refused_in_words(options, words):
    with pytest.raises(ProgramError, match=words):
        _host(**options)
