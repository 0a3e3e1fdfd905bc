"""Program construction and validation: every kind of bad program gets one clear ProgramError."""
import pytest
import sympy as sp
from sympy import Idx, IndexedBase, Sum, exp, symbols

from symderive import Builder, Maximum, ProgramError
from symderive.program.ir import flatten_parts, free_indices

n, d, V, B, E = symbols("n d V B E", integer=True, positive=True)
i, j, k, c = Idx("i", n), Idx("j", d), Idx("k", n), Idx("c", V)
x, y, z, Y, w = symbols("x y z Y w", cls=IndexedBase)
loss = symbols("loss")
SIZES = {n: 4, d: 3, V: 5, B: 2, E: 3}


def layer(**options) -> Builder:
    builder = Builder("layer", sizes=dict(SIZES), **options)
    builder.input(x[i, j])
    return builder


def test_builder_records_inputs_statements_and_declaration_order():
    b = layer()
    b[y[j]] = Sum(x[i, j], i) / n
    b.output(y)
    program = b.build()
    assert [s.name for s in program.body] == ["y"]
    assert program.declared == ("x", "y")
    assert program.shape("y") == (d,)
    assert program.outputs == ("y",)


def test_flattened_index_parts_are_row_major():
    t, e = Idx("t", B), Idx("e", E)
    assert flatten_parts(E * t + e) == [t, e]
    assert flatten_parts(t + e) is None


def test_free_indices_skip_bound_ones():
    assert free_indices(Sum(x[i, j], i)) == [j]
    assert free_indices(Maximum(x[i, j], j)) == [i]


@pytest.mark.parametrize("build, words", [
    (lambda b: b.__setitem__(y[i, j], z[i, j]), "'z' is not defined"),
    (lambda b: b.__setitem__(y[j], x[i, j]), "index 'i' is free on the right"),
    (lambda b: b.__setitem__(y[i, j], x[j, i]), "axis 0 of 'x' has size n"),
    (lambda b: (b.__setitem__(y[i, j], x[i, j]), b.__setitem__(y[i, j], 2 * x[i, j])),
     "'y' is defined twice"),
    (lambda b: b.__setitem__(y[i, j], sp.gamma(x[i, j])), "function 'gamma' has no derivative rule"),
    (lambda b: b.__setitem__(y[i, j], Sum(x[i, j], i)), "summed over but is also free"),
    (lambda b: b.__setitem__(y[i, j], x[i]), "'x' has 2 indices"),
    (lambda b: b.__setitem__(y[i, j], x[i, j] ** x[i, j]), "exponent"),
], ids=["undefined", "free-index", "range", "twice", "no-rule", "bound-free", "rank", "exponent"])
def test_bad_statement_is_named(build, words):
    b = layer()
    build(b)
    b.output(y)
    with pytest.raises(ProgramError, match="statement") as error:
        b.build()
    assert words in str(error.value)


def test_non_scalar_loss_is_rejected():
    b = layer()
    b[y[i, j]] = exp(x[i, j])
    b.loss(y)
    with pytest.raises(ProgramError, match="must be a scalar"):
        b.build()


def test_integer_label_cannot_be_differentiated():
    b = layer()
    b.labels(Y[i], V)
    b[y[i, j]] = x[i, j] * Y[i]
    b.output(y)
    with pytest.raises(ProgramError, match="integer label"):
        b.build()


def test_label_range_must_match_the_axis_it_indexes():
    b = Builder("layer", sizes=dict(SIZES))
    b.input(w[i, j])
    b.labels(Y[i], V)
    b[loss] = Sum(w[i, Y[i]], i)
    b.loss(loss)
    with pytest.raises(ProgramError, match="ranges over V"):
        b.build()


def test_missing_example_size_is_named():
    b = Builder("layer", sizes={n: 4})
    b.input(x[i, j])
    b[y[i, j]] = x[i, j]
    b.output(y)
    with pytest.raises(ProgramError, match="size d"):
        b.build()


def test_name_clashing_with_an_adjoint_is_rejected():
    dx = IndexedBase("dx")
    b = layer()
    b[dx[i, j]] = 2 * x[i, j]
    b.output(dx)
    with pytest.raises(ProgramError, match="adjoint of 'x'"):
        b.build()


@pytest.mark.parametrize("name", ["np", "values", "class", "_hidden"])
def test_names_that_would_break_emitted_code_are_rejected(name):
    bad = IndexedBase(name)
    b = layer()
    b[bad[i, j]] = 2 * x[i, j]
    b.output(bad)
    with pytest.raises(ProgramError):
        b.build()


def test_lhs_without_indices_is_rejected_immediately():
    b = layer()
    with pytest.raises(ProgramError, match="with its indices"):
        b[y] = x[i, j]


def test_example_sizes_must_be_positive_integers():
    b = Builder("layer", sizes={n: 0, d: 3})
    b.input(x[i, j])
    b[y[i, j]] = x[i, j]
    b.output(y)
    with pytest.raises(ProgramError, match="positive integer"):
        b.build()


def test_undeclared_output_is_rejected():
    b = layer()
    b.output(y)
    with pytest.raises(ProgramError, match="output 'y'"):
        b.build()


@pytest.mark.parametrize("build, words", [
    (lambda b: b.__setitem__(y[i, j], Sum(x[i, j], (i, 0, 1))), "whole range"),
    (lambda b: b.__setitem__(y[i, j], 2 * sp.Symbol("x")), "read it as x[i, j]"),
    (lambda b: b.__setitem__(y[i], Maximum(x[i, 0 * j] + 1, j)), "does not use"),
    (lambda b: b.__setitem__(IndexedBase("n")[i, j], x[i, j]), "names both a size"),
    (lambda b: b.__setitem__(IndexedBase("i")[i, j], x[i, j]), "names both an index"),
], ids=["part-of-range", "bare-array-name", "max-of-constant", "array-named-like-size",
        "array-named-like-index"])
def test_more_bad_statements_are_named(build, words):
    b = layer()
    build(b)
    b.output(y)
    with pytest.raises(ProgramError) as error:
        b.build()
    assert words in str(error.value)


@pytest.mark.parametrize("options, words", [
    ({"sizes": {symbols("np", integer=True, positive=True): 2}}, "reserved"),
    ({"constants": {symbols("lambda"): 1.0}}, "keyword"),
    ({"adjoints": "everything"}, "not 'all', 'inputs'"),
    ({"adjoints": ("nothing",)}, "'nothing' is not an input or a statement"),
], ids=["size-named-np", "constant-keyword", "adjoints-word", "adjoints-name"])
def test_bad_sizes_constants_and_adjoints_are_named(options, words):
    sizes = {**SIZES, **options.pop("sizes", {})}
    b = Builder("layer", sizes=sizes, **options)
    b.input(x[i, j])
    b[y[i, j]] = 2 * x[i, j]
    b.output(y)
    with pytest.raises(ProgramError, match=words):
        b.build()


def test_the_name_table_holds_what_the_emitted_code_uses():
    from symderive.program.names import RESERVED

    assert {"np", "dict", "device", "ctx"} <= RESERVED


def test_constants_become_plain_floats():
    b = layer(constants={symbols("c"): sp.Rational(1, 4)})
    b[y[i, j]] = symbols("c") * x[i, j]
    b.output(y)
    assert b.build().constants == ((symbols("c"), 0.25),)
    assert type(b.build().constants[0][1]) is float


def test_statements_remember_where_they_were_written():
    b = layer()
    b[y[i, j]] = sp.Max(x[i, j], 0, sp.tanh(x[i, j]) - 1 / 2)  # Max of three values has no rule
    b.output(y)
    with pytest.raises(ProgramError, match=r"Max\(.*\)' \(test_ir.py:\d+\)"):
        b.build()


def test_a_declared_sign_sets_or_checks_the_example_values():
    from sympy import Idx, IndexedBase, symbols

    from symderive import Builder, ProgramError, normal, uniform

    n = symbols("n", integer=True, positive=True)
    i = Idx("i", n)
    p, y = IndexedBase("p", positive=True), IndexedBase("y")
    b = Builder("signs", sizes={n: 3})
    b.input(p[i])
    assert b.inputs[0].init == uniform(0.5, 2.0)
    with pytest.raises(ProgramError, match="declared positive"):
        Builder("signs", sizes={n: 3}).input(p[i], normal(1.0))
    b[y[i]] = p[i] ** 2
    b.output(y)
    assert b.build().input("p").init.low > 0


def test_lookups_are_tables_that_agree_with_a_scan():
    """Name and statement lookups are built once on the frozen Program (the deriver asks them per
    atom); they must answer what scanning the inputs and body answers."""
    from symderive.program.ir import name_of

    b = layer()
    b.labels(Y[i], V)
    b[y[j]] = Sum(x[i, j], i) / n
    b[z[i, j]] = x[i, j] - y[j]
    b.output(z)
    program = b.build()
    assert program.names == ("x", "Y", "y", "z") and program.name_set == set(program.names)
    for name in program.names:
        assert program.input(name) is next((s for s in program.inputs if s.name == name), None)
        assert program.definition(name) is next(
            (s for s in program.body if s.name == name and not s.accumulate), None)
        assert program.declared_position[name] == program.declared.index(name)
    assert program.input("nothing") is None and program.definition("x") is None
    assert program.axes("z") == (i, j) and program.axes("z") is program.axes("z")
    assert name_of(IndexedBase(sp.Symbol("w_1"))[i]) == "w_1" == name_of(IndexedBase("w_1"))
