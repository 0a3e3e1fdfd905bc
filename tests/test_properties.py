"""Property tests: random programs written the way users write derivation files, run through the
whole pipeline (validate, derive atomic and compact, simplify, emit NumPy and torch, check).

The grammar (``programs()``) draws a short chain of named statements over x[i, j] (n=4, d=3): every
op of ``symderive.program.ops.OPS`` with its argument kept inside its domain, integer, rational and float
powers, division by arrays, broadcasts of rows, columns and scalar intermediates, batch and feature
reductions, ``Maximum`` over either axis, contractions to a new axis and of three arrays, transposed
reads, gathers and label picks, ``include`` of small layer programs, and a loss or one or several
layer outputs. Each example is one program, checked atomically (``adjoints="all"``) and compactly
(a random ``adjoints=`` tuple), in float64. A failing example is shown as the source to paste.

Profiles (tests/conftest.py): "ci" (default, 300 derandomized examples) and "long" (3000 random ones):

    SYMDERIVE_FUZZ=long .venv/bin/python -m pytest tests/test_properties.py
"""
import functools
import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import symderive
from symderive.algebra.simplify import compact_backward, compact_gradients, derive_backward
from symderive.codegen.emit import module_source
from symderive.program import ops
from symderive.verify.check import example_inputs, load_module, run_check

from .interpret import tensor

SIZES = "{n: 4, d: 3, V: 3, U: 2}"
# What every generated program starts from; the drawn part follows it.
PREAMBLE = """\
n, d, V, U = symbols("n d V U", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j, k, m, v = Idx("i", n), Idx("j", d), Idx("k", n), Idx("m", d), Idx("v", V)
q, l = Idx("q", U), Idx("l", d + U - 1)
x, p, w, b, M, T, Y, Z, S, K = symbols("x p w b M T Y Z S K", cls=IndexedBase)
"""
# Inputs, declared when first read: name -> (kind, declaration arguments, positive).
INPUTS = {
    "x": ("mat", "x[i, j], normal(1.0)", False),
    "p": ("mat", "p[i, j], uniform(0.5, 2.0)", True),
    "w": ("col", "w[j], uniform(0.5, 1.5)", True),
    "b": ("row", "b[i], normal(0.5)", False),
    "M": ("square", "M[m, j], normal(0.5)", False),
    "T": ("table", "T[v, j], normal(0.5)", False),
    "S": ("wide", "S[i, l], normal(1.0)", False),  # a signal U - 1 longer than the features
    "K": ("kernel", "K[q], normal(0.5)", False),  # a 1-D kernel sliding along it
}
LABELS = {"Y": "Y[i], V", "Z": "Z[i], d"}  # Z picks a column of an (i, j) array

# Small layers a program may include, each built by its own Builder over the same indices. The
# host renames every name (the layer's z to the value it feeds in, the rest to fresh names).
LAYER_NAMES = "z g W L mu zc var out zmax ez esum pre lse"
LAYER_PREAMBLE = (f'{LAYER_NAMES.replace(" ", ", ")} = symbols("{LAYER_NAMES}", cls=IndexedBase)\n'
                  'nll = symbols("nll")\n')
LAYERS = {
    "center": ("mat", """\
center = Builder("center", sizes={sizes})
center.input(z[i, j])
center[mu[j]] = Sum(z[i, j], i) / n
center[out[i, j]] = z[i, j] - mu[j]
center.output(out)
center = center.build()
"""),
    "norm": ("mat", """\
norm = Builder("norm", sizes={sizes}, constants={{eps: 0.5}})
norm.input(z[i, j])
norm.input(g[j], uniform(0.5, 1.5))
norm[mu[i]] = Sum(z[i, m], m) / d
norm[zc[i, j]] = z[i, j] - mu[i]
norm[var[i]] = Sum(zc[i, m]**2, m) / d
norm[out[i, j]] = g[j] * zc[i, j] * (var[i] + eps)**Rational(-1, 2)
norm.output(out)
norm = norm.build()
"""),
    "softmax": ("mat", """\
softmax = Builder("softmax", sizes={sizes})
softmax.input(z[i, j])
softmax[zmax[i]] = Maximum(z[i, m], m)
softmax[ez[i, j]] = exp(z[i, j] - zmax[i])
softmax[esum[i]] = Sum(ez[i, m], m)
softmax[out[i, j]] = ez[i, j] / esum[i]
softmax.output(out)
softmax = softmax.build()
"""),
    "dense": ("mat", """\
dense = Builder("dense", sizes={sizes})
dense.input(z[i, j])
dense.input(W[m, j])
dense.input(g[j])
dense[pre[i, j]] = Sum(z[i, m] * W[m, j], m) + g[j]
dense[out[i, j]] = tanh(pre[i, j])
dense.output(out)
dense = dense.build()
"""),
    "xent": ("loss", """\
xent = Builder("xent", sizes={sizes})
xent.input(z[i, j])
xent.labels(L[i], d)
xent[zmax[i]] = Maximum(z[i, m], m)
xent[lse[i]] = log(Sum(exp(z[i, m] - zmax[i]), m)) + zmax[i]
xent[nll] = -Sum(z[i, L[i]] - lse[i], i) / n
xent.loss(nll)
xent = xent.build()
"""),
}
LAYER_INPUTS = {"g": "w", "W": "M", "L": "Z"}  # the host inputs a layer's other inputs become

NAMESPACE = {
    **{name: getattr(sp, name) for name in ("Idx", "IndexedBase", "KroneckerDelta", "Rational",
                                            "Sum", "symbols")},
    **{name: getattr(symderive, name) for name in ("Builder", "Maximum", "normal", "uniform")},
    **{key.__name__: key for key in ops.OPS},  # exp, log, ..., Pow: whatever the table holds
    "Piecewise": sp.Piecewise,  # as a user writes it (Builder keeps it as ops.Piecewise)
}


def run(source: str) -> dict:
    namespace = dict(NAMESPACE)
    exec(source, namespace)  # noqa: S102 - source this file generated
    return namespace


@functools.cache
def layer_program(name: str) -> symderive.Program:
    return run(PREAMBLE + LAYER_PREAMBLE + LAYERS[name][1].format(sizes=SIZES))[name]


# What the table's functions do, found numerically so that a new row needs no entry here.
def _values(key, low: float, high: float) -> list[float]:
    """``key`` at 41 points of [low, high], clipped to the domain's lower end where that is
    positive (log); a complex value counts as infinite."""
    if _domain_is_positive(key):
        low = max(low, ops.OPS[key].domain[0])
    values = [complex(key(sp.Float(low + (high - low) * t / 40))) for t in range(41)]
    return [value.real if value.imag == 0 else math.inf for value in values]


def _unary(key) -> bool:
    return key not in (sp.Pow, ops.Piecewise)


@functools.cache
def _moderate_on_domain(key) -> bool:
    return max(map(abs, _values(key, *ops.OPS[key].domain))) <= 10


@functools.cache
def _bounded_everywhere(key) -> bool:  # tanh, sin, cos
    return max(map(abs, _values(key, -30, 30))) <= 1.5


@functools.cache
def _positive_everywhere(key) -> bool:  # exp, cosh
    return min(_values(key, -5, 5)) > 0


def _domain_is_positive(key) -> bool:  # log
    return ops.OPS[key].domain[0] >= 0


def _declare(names: list[str], cls: str = "") -> str:
    if len(names) == 1:
        return f'{names[0]} = symbols("{names[0]}"{cls})\n'
    return f'{", ".join(names)} = symbols("{" ".join(names)}"{cls})\n'


class Draft:
    """A program being drawn, kept as the source text a user would write. Besides its kind
    (mat: (i, j), row: (i), col: (j), square: (m, j), scalar), a name may be known to be positive
    (away from zero: a divisor, a log's argument), non-negative, moderate (|value| of a few units:
    safe under exp) or unit (|value| <= ~1: safe under powers)."""

    def __init__(self, draw=None):
        self.draw = draw
        self.declarations: list[str] = []
        self.layers: list[str] = []  # the layer programs it includes, in order
        self.lines: list[str] = []  # statements and includes of the host
        self.kinds: dict[str, str] = {name: kind for name, (kind, _, _) in INPUTS.items()}
        self.defined: list[str] = []  # host names, in order
        self.scalars: list[str] = []
        self.positive = {name for name, (_, _, positive) in INPUTS.items() if positive}
        self.nonnegative = set(self.positive)
        self.moderate = set(INPUTS)
        self.unit: set[str] = set()
        self.outputs = ""
        self.adjoints: tuple[str, ...] = ()

    # -- names -----------------------------------------------------------------------------------
    def use(self, name: str) -> str:
        """``name``, declaring it first if it is an input."""
        line = (f"f.input({INPUTS[name][1]})" if name in INPUTS else
                f"f.labels({LABELS[name]})" if name in LABELS else None)
        if line and line not in self.declarations:
            self.declarations.append(line)
        return name

    def pick(self, kind: str, where=lambda name: True) -> str | None:
        """An available name of ``kind``, the newest first (shrinking goes towards it)."""
        found = [name for name in reversed(self.defined) if self.kinds[name] == kind]
        found += [name for name, spec in INPUTS.items() if spec[0] == kind]
        found = [name for name in found if where(name)]
        if not found:
            return None
        # half the time the newest (a chain), else any (fan-out); shrinks towards the chain
        return self.use(self.draw(st.sampled_from(found)) if self.draw(st.booleans()) else found[0])

    def mat(self, other_than: str | None = None) -> str:
        """A mat (other than ``other_than``: ``a - a`` is exactly zero and ties every Maximum)."""
        return self.pick("mat", lambda name: name != other_than)

    def fresh(self, kind: str) -> str:
        name = {"mat": "a", "row": "r", "col": "c", "square": "G", "scalar": "s",
                "wide": "h"}[kind]
        name += str(len(self.defined))
        self.kinds[name] = kind
        self.defined.append(name)
        if kind == "scalar":
            self.scalars.append(name)
        return name

    def mark(self, name: str, *flags: str) -> str:
        """Record what is known of ``name``'s values; each flag implies the weaker ones."""
        flags = set(flags)
        if "unit" in flags:
            flags.add("moderate")
        if "positive" in flags:
            flags.add("nonnegative")
        for flag in flags:
            getattr(self, flag).add(name)
        return name

    def define(self, kind: str, rhs: str, *flags: str) -> str:
        name = self.fresh(kind)
        lhs = {"mat": "{}[i, j]", "row": "{}[i]", "col": "{}[j]", "square": "{}[m, j]",
               "scalar": "{}", "wide": "{}[i, l]"}[kind].format(name)
        self.lines.append(f"f[{lhs}] = {rhs}")
        return self.mark(name, *flags)

    def include(self, layer: str, z: str, **names: str) -> None:
        """``f.include(layer, ...)`` feeding ``z`` in; the layer's other inputs become host inputs
        and its statements get fresh names prefixed by its output's."""
        if layer not in self.layers:
            self.layers.append(layer)
        program = layer_program(layer)
        out = names.get(program.outputs[0], f"{program.outputs[0]}")
        renames = {"z": z}
        for inner in program.names:
            if inner in LAYER_INPUTS:
                renames[inner] = self.use(LAYER_INPUTS[inner])
            elif inner != "z":
                renames[inner] = names.get(inner, f"{out}{inner}")
        self.lines.append(f"f.include({layer}, "
                          + ", ".join(f'{old}="{new}"' for old, new in renames.items()) + ")")

    # -- the finished source ---------------------------------------------------------------------
    def source(self, adjoints) -> str:
        """The program's source, with ``adjoints="all"`` or the drawn tuple."""
        if adjoints == "all":
            argument = ', adjoints="all"'
        else:
            argument = f", adjoints={tuple(adjoints)!r}" if adjoints else ""
        arrays = [name for name in self.defined if name not in self.scalars]
        layers = LAYER_PREAMBLE + "".join(LAYERS[name][1].format(sizes=SIZES)
                                          for name in self.layers) if self.layers else ""
        return (PREAMBLE + layers
                + (_declare(arrays, ", cls=IndexedBase") if arrays else "")
                + _declare(self.scalars + ["loss"])
                + f'f = Builder("fuzz", sizes={SIZES}, constants={{eps: 0.5}}{argument})\n'
                + "".join(line + "\n" for line in self.declarations + self.lines)
                + self.outputs + "\nprogram = f.build()\n")

    def build(self, adjoints) -> symderive.Program:
        return run(self.source(adjoints))["program"]


# -- productions: each appends one or a few statements ---------------------------------------------
def function_of(key):
    """A production applying the table's function ``key`` to an argument inside its domain: the
    value squashed into the domain, the value itself where the domain allows any sign and it is
    moderate, or for a positive domain (log) a square plus one or a positive value."""
    low, high = ops.OPS[key].domain

    def production(g: Draft):
        a = g.mat()
        middle, half = (low + high) / 2, (high - low) / 2
        squashed = f"{half:g}*tanh({a}[i, j])"
        forms = [(f"{middle:g} + {squashed}" if middle else squashed, True)]
        if low < 0 < high and a in g.moderate:
            forms.append((f"{a}[i, j]", True))
        if _domain_is_positive(key):
            forms.append((f"{a}[i, j]**2 + 1", False))
            positive = g.pick("mat", lambda name: name in g.positive)
            if positive:
                forms.append((f"{positive}[i, j]", False))
        argument, inside = g.draw(st.sampled_from(forms))
        squashed_in = argument == forms[0][0]
        flags = ["unit"] if _bounded_everywhere(key) else []
        # only a value squashed into the domain bounds the result: exp of a raw moderate value
        # (up to 10) is not moderate, and exp of that overflows (found by the long profile)
        if squashed_in and _moderate_on_domain(key) or _bounded_everywhere(key):
            flags.append("moderate")
        if inside and _positive_everywhere(key):
            flags.append("positive")
        g.define("mat", f"{key.__name__}({argument})", *flags)

    production.__name__ = f"apply_{ops.OPS[key].name}"
    return production


def power(g: Draft):
    """Integer powers of small values, negative, rational and float powers of positive ones."""
    a = g.mat()
    base, unit = (f"{a}[i, j]", a in g.unit) if a in g.unit or a in INPUTS else \
        (f"tanh({a}[i, j])", True)
    choices = [(f"{base}**2", ("nonnegative", "unit") if unit else ("nonnegative",)),
               (f"{base}**3", ("unit",) if unit else ()),
               (f"({a}[i, j]**2 + 1)**Rational(-1, 2)", ("positive", "unit")),
               (f"({a}[i, j]**2 + 1)**-1", ("positive", "unit"))]
    positive = g.pick("mat", lambda name: name in g.positive)
    if positive:
        choices += [(f"{positive}[i, j]**{exponent}", ("positive",))
                    for exponent in ("1.5", "0.5", "Rational(-1, 2)", "-1")]
    rhs, flags = g.draw(st.sampled_from(choices))
    g.define("mat", rhs, *flags)


def arithmetic(g: Draft):
    """Two values combined; reading an earlier one again is fan-out."""
    a = g.mat()
    o = g.mat(other_than=a)
    g.define("mat", g.draw(st.sampled_from([f"{a}[i, j] + {o}[i, j]", f"{a}[i, j] - {o}[i, j]",
                                            f"{a}[i, j]*{o}[i, j]",
                                            f"{a}[i, j]/({o}[i, j]**2 + 1)"])))


def divide(g: Draft):
    """Division by a positive array, row, column or scalar."""
    a = g.mat()
    kind = g.draw(st.sampled_from(["mat", "row", "col", "scalar"]))
    q = g.pick(kind, lambda name: name in g.positive and name != a)  # a/a would be 1
    if q is None:
        kind, q = ("mat", g.use("p")) if kind == "mat" and a != "p" else ("col", g.use("w"))
    g.define("mat", f"{a}[i, j]/{q}" + {"mat": "[i, j]", "row": "[i]", "col": "[j]",
                                        "scalar": ""}[kind])


def broadcast(g: Draft):
    """A row, column, scalar or named constant combined with an (i, j) value."""
    a = g.mat()
    kind = g.draw(st.sampled_from(["row", "col", "scalar", "constant"]))
    if kind == "constant":
        g.define("mat", g.draw(st.sampled_from([f"{a}[i, j]*eps*log(d)",
                                                f"({a}[i, j] + eps)/(n - 1)"])))
        return
    if kind == "scalar" and not g.scalars:
        g.define("scalar", f"Sum(Sum({a}[i, j]**2, i), j)/(n*d)", "nonnegative")
    r = g.pick(kind)
    read = {"row": f"{r}[i]", "col": f"{r}[j]", "scalar": r}[kind]
    forms = [f"{a}[i, j] + {read}", f"{a}[i, j]*{read}", f"{a}[i, j]/({read}**2 + 1)"]
    if r in g.nonnegative:
        forms.append(f"{a}[i, j]/({read} + 1)")
    g.define("mat", g.draw(st.sampled_from(forms)))


def reduce_rows(g: Draft):
    """A row: a weighted sum over the features, their maximum, a label pick or a mean square."""
    a = g.mat()
    rhs, flags = g.draw(st.sampled_from([(f"Sum({a}[i, m]*w[m], m)", ()),
                                         (f"Maximum({a}[i, m], m)", ()),
                                         (f"{a}[i, Z[i]]", ()),
                                         (f"Sum({a}[i, m]**2, m)/d", ("nonnegative",))]))
    g.use("w" if "w[" in rhs else "Z" if "Z[" in rhs else "x")
    g.define("row", rhs, *flags)


def reduce_columns(g: Draft):
    """A column: a batch mean, maximum, inner product of two values or unbiased mean square."""
    a = g.mat()
    o = g.mat()
    rhs, flags = g.draw(st.sampled_from([(f"Sum({a}[k, j], k)/n", ()),
                                         (f"Maximum({a}[k, j], k)", ()),
                                         (f"Sum({a}[k, j]*{o}[k, j], k)", ()),
                                         (f"Sum({a}[k, j]**2, k)/(n - 1)", ("nonnegative",))]))
    g.define("col", rhs, *flags)


def scalar(g: Draft):
    """A scalar intermediate, then an (i, j) value normalised or scaled by it."""
    a = g.mat()
    if g.draw(st.booleans()):
        s = g.define("scalar", f"Sum(Sum({a}[i, j]**2, i), j)", "nonnegative")
        g.define("mat", f"{a}[i, j]/({s} + 1)")
    else:
        s = g.define("scalar", f"Sum(Sum({a}[i, j]*{g.use('x')}[i, j], i), j)/n")
        g.define("mat", f"{a}[i, j]*{s}")


def centre(g: Draft):
    """Centre over the batch, or subtract the maximum over the batch or over the features."""
    a = g.mat()
    g.define("mat", g.draw(st.sampled_from([f"{a}[i, j] - Sum({a}[k, j], k)/n",
                                            f"{a}[i, j] - Maximum({a}[k, j], k)",
                                            f"{a}[i, j] - Maximum({a}[i, m], m)"])))


def gram(g: Draft):
    """A (d, d) intermediate: the batch Gram matrix of two values."""
    a = g.mat()
    o = g.mat()
    g.define("square", f"Sum({a}[k, m]*{o}[k, j], k)/n")


def contract(g: Draft):
    """A contraction to a new axis, of two or three arrays, the square one maybe transposed."""
    a = g.mat()
    s = g.pick("square")
    g.define("mat", g.draw(st.sampled_from([f"Sum({a}[i, m]*{s}[m, j], m)",
                                            f"Sum({a}[i, m]*{s}[j, m], m)",
                                            f"Sum({a}[i, m]*{s}[m, j]*{g.use('w')}[m], m)",
                                            f"Sum({a}[i, m]*{s}[j, m]*{a}[i, m], m)"])))


def gather(g: Draft):
    """Rows of a table picked by labels: the adjoint is a scatter-add."""
    a = g.mat()
    g.use("T"), g.use("Y")
    g.define("mat", g.draw(st.sampled_from([f"{a}[i, j] + T[Y[i], j]",
                                            f"{a}[i, j]*T[Y[i], j]"])))


def piecewise(g: Draft):
    """The table's Piecewise: a value split at constants into a kink (leaky relu), clipped
    constant ends (hardtanh) or a band joined by & with a jump at its edges."""
    a = g.mat()
    v = f"{a}[i, j]"
    rhs, flags = g.draw(st.sampled_from([
        (f"Piecewise(({v}, {v} > 0), (eps*{v}, True))", ("moderate",) if a in g.moderate else ()),
        (f"Piecewise((-1, {v} <= -1), (1, {v} >= 1), ({v}, True))", ("unit",)),
        (f"Piecewise(({v}**2/2, ({v} > -1) & ({v} < 1)), (tanh({v}), True))", ("unit",))]))
    g.define("mat", rhs, *flags)


piecewise.__name__ = f"apply_{ops.OPS[ops.Piecewise].name}"


def squash(g: Draft) -> str:
    """tanh keeps values moderate for what follows."""
    return g.define("mat", f"tanh({g.mat()}[i, j])", "unit")


def include(g: Draft):
    """A small layer program, included with its names renamed."""
    layer = g.draw(st.sampled_from([name for name, (kind, _) in LAYERS.items() if kind == "mat"]))
    a = g.mat()
    out = g.fresh("mat")
    g.include(layer, a, out=out)
    g.mark(out, *{"softmax": ("positive", "unit"), "dense": ("unit",), "norm": ("moderate",),
                  "center": ()}[layer])


def window(g: Draft):
    """A 1-D window with a 1-D kernel, as a convolution reads it: ``S[i, j + q]`` slides over an
    axis of d + U - 1 (of the input, or of a map of it first), weighted by ``K[q]``."""
    wide = g.pick("wide")
    if g.draw(st.booleans()):
        wide = g.define("wide", f"tanh({wide}[i, l])", "unit")
    g.use("K")
    read = f"{wide}[i, j + q]"
    a = g.mat()
    g.define("mat", g.draw(st.sampled_from([f"Sum(K[q]*{read}, q)", f"Sum(K[q]*{read}, q)*{a}[i, j]",
                                            f"Sum(K[q]*{read}**2, q)"])))


def offset_delta(g: Draft):
    """A delta at an offset: a value kept on a shifted diagonal, a shifted identity added, or the
    rows moved up by one (each zero where the shifted index leaves its range)."""
    a = g.mat()
    g.define("mat", g.draw(st.sampled_from([f"{a}[i, j]**2*KroneckerDelta(i, j + 1)",
                                            f"{a}[i, j] + KroneckerDelta(i, j + 1)",
                                            f"Sum({a}[k, j]*KroneckerDelta(k, i + 1), k)"])))


def kink(g: Draft):
    """Kinks of two arguments and what is built on them: relu, a clip, a tie between two values,
    a step times a value, and squares and products whose second derivative at the kink is the
    convention the op table states (a Piecewise: the branch its conditions select)."""
    a = g.mat()
    o = g.mat(other_than=a)
    v = f"{a}[i, j]"
    g.define("mat", g.draw(st.sampled_from([
        f"Max({v}, 0)", f"Min({v}, 1)", f"Max({v}, 0)**2", f"{v}*Abs({v})",
        f"Max(-1, Min(1, {v}))*{v}", f"Max({v}, {o}[i, j])", f"Heaviside({v}, 0)*{o}[i, j]",
        f"Piecewise(({v}**2/2, Abs({v}) < 1), (Abs({v}) - Rational(1, 2), True))"])))


PRODUCTIONS = [squash, *[function_of(key) for key in ops.OPS if _unary(key)], piecewise, power,
               arithmetic, divide, broadcast, reduce_rows, reduce_columns, scalar, centre, gram,
               contract, gather, include, window, offset_delta, kink]
# What a program on a grid of kink values draws from: no maximum over an index (a tie on the grid
# would ask which of equal elements is the maximum) and nothing that needs a value off the grid.
KINK_PRODUCTIONS = [kink, piecewise, arithmetic, squash, power, broadcast, scalar, contract,
                    window, offset_delta, gather]


def finish(g: Draft):
    """A loss (adjoint 1) or one or several layer outputs (each with an upstream adjoint), and
    the intermediates the compact backward materialises besides the inputs."""
    a = g.pick("mat", lambda name: name not in INPUTS) or squash(g)
    if g.draw(st.booleans()):
        form = g.draw(st.sampled_from(["squares", "weighted", "pick", "xent"]))
        if form == "xent":
            g.include("xent", a, nll="loss")
        else:
            g.use("w" if form == "weighted" else "Z")
            g.lines.append("f[loss] = " + {
                "squares": f"Sum(Sum({a}[i, j]**2, i), j)/n",
                "weighted": f"Sum(Sum({a}[i, j]*w[j], i), j)",
                "pick": f"-Sum({a}[i, Z[i]], i)/n"}[form])
        g.outputs = "f.loss(loss)"
    else:
        others = [name for name in g.defined if name != a]
        extra = g.draw(st.lists(st.sampled_from(others), max_size=2, unique=True)) if others else []
        g.outputs = f"f.output({', '.join([a, *extra])})"
    if g.defined:
        g.adjoints = tuple(g.draw(st.lists(st.sampled_from(g.defined), max_size=2, unique=True)))


@st.composite
def programs(draw, max_statements: int = 5, productions=tuple(PRODUCTIONS)) -> Draft:
    g = Draft(draw)
    g.use("x")
    for production in draw(st.lists(st.sampled_from(productions), min_size=1,
                                     max_size=max_statements)):
        production(g)
    finish(g)
    return g


# -- the properties ---------------------------------------------------------------------------------
TOLERANCE = 1e-9  # float64 relmaxdiff of a gradient against the independent reference
TARGETS = {"numpy", "torch"}


@functools.cache
def oracle_rows_exist() -> bool:
    """Whether ``check`` compares with the independent oracle evaluator (rows 'oracle'); once it
    does, every gradient of both targets must have its oracle row."""
    tiny = Draft()
    tiny.use("x")
    tiny.define("mat", "tanh(x[i, j])")
    tiny.outputs = "f.output(a0)"
    return any(row.reference == "oracle" for row in run_check(tiny.build(()), "float64").rows)


def assert_checks(program) -> None:
    """Every row and forward row passes; both targets have every gradient; each gradient is
    within ``TOLERANCE`` of the independent reference."""
    report = run_check(program, "float64")
    assert report.ok, [row for row in report.rows + report.forward if not row.approximate]
    assert report.forward, "no forward rows"
    gradients = {(row.name, row.target) for row in report.rows if row.target in TARGETS}
    names = {name for name, _ in gradients}
    assert names and gradients == {(name, target) for name in names for target in TARGETS}
    independent = list(report.rows)
    if oracle_rows_exist():
        independent = [row for row in report.rows if row.reference == "oracle"]
        covered = {(row.name, row.target) for row in independent}
        assert gradients <= covered, f"no oracle row for {gradients - covered}"
    worst = max(independent, key=lambda row: row.relmaxdiff)
    assert worst.relmaxdiff <= TOLERANCE, worst


def growth(gradient) -> tuple[int, int, set[str]] | None:
    """(ops of the inlined expression, ops of the result, the rules whose steps added ops) when
    simplification made ``gradient`` bigger than its inlined chain, else None."""
    if not gradient.steps:
        return None
    first = gradient.steps[0]
    inlined = first.after if first.rule == "inline" else first.before
    before, after = sp.count_ops(inlined), sp.count_ops(gradient.expr)
    if after <= before:
        return None
    rules = {step.rule for step in gradient.steps if step.rule != "inline"
             and sp.count_ops(step.after) > sp.count_ops(step.before)}
    return before, after, rules




def reuses_a_self_updated_adjoint(program) -> bool:
    """A compact backward statement ``dA = dA + ...`` whose right side a later statement repeats:
    what emit.reuse_earlier wrongly replaces by the updated ``dA``."""
    body = compact_backward(program)[0].body
    return any(statement.lhs in statement.rhs.atoms(sp.Indexed, sp.Symbol)
               and any(later.rhs.has(statement.rhs) for later in body[position + 1:])
               for position, statement in enumerate(body))


def assert_simplification_never_grows(program) -> None:
    for gradient in compact_gradients(program):
        grew = growth(gradient)
        assert grew is None, (gradient.name, grew, gradient.steps)


@given(programs())
def test_random_program_atomic_and_compact_backward(draft):
    note(draft.source(draft.adjoints))
    assert_checks(draft.build("all"))
    compact = draft.build(draft.adjoints)
    assert_checks(compact)
    assert_simplification_never_grows(compact)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_statements=3))
def test_emitted_forward_matches_the_loop_oracle(draft):
    """The forward is checked against the index semantics, not only NumPy against torch."""
    note(draft.source(draft.adjoints))
    program = draft.build(draft.adjoints)
    module = load_module(module_source(program, derive_backward(program), "numpy"), "fuzz_numpy")
    inputs = example_inputs(program, torch.float64, seed=0)
    values = module.forward(*(value.numpy() for value in inputs.values()))
    known = {name: value.numpy() for name, value in inputs.items()}
    scalars = dict(program.sizes) | dict(program.constants)
    for statement in program.body:
        axes = list(statement.lhs.indices) if isinstance(statement.lhs, sp.Indexed) else []
        known[statement.name] = tensor(statement.rhs, axes, known, scalars)
        np.testing.assert_allclose(values[statement.name], known[statement.name],
                                   rtol=1e-10, atol=1e-12, err_msg=str(statement))


def test_every_op_of_the_table_is_in_the_grammar():
    """New rows of ops.OPS are fuzzed without editing this file."""
    names = {production.__name__ for production in PRODUCTIONS}
    for key, op in ops.OPS.items():
        assert (f"apply_{op.name}" in names) if key is not sp.Pow else "power" in names
        assert math.isfinite(float(key(sp.Float(sum(op.domain) / 2))) if _unary(key) else 1.0)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_layer_builds(layer):
    assert isinstance(layer_program(layer), symderive.Program)


# -- minimal programs of the known bugs (the KNOWN_* entries above) ------------------------------
DEAD_READER = """\
a, c, out = symbols("a c out", cls=IndexedBase)
f = Builder("fuzz", sizes={n: 4, d: 3}, adjoints=("a",))
f.input(x[i, j], normal(1.0))
f[a[i, j]] = tanh(x[i, j])
f[c[i, j]] = sin(a[i, j])  # nothing reads c
f[out[i, j]] = exp(a[i, j])
f.output(out)
program = f.build()
"""
CANCELLED_READER = """\
a, c, lse = symbols("a c lse", cls=IndexedBase)
loss = symbols("loss")
f = Builder("fuzz", sizes={n: 4, d: 3}, adjoints=("a",))
f.input(x[i, j], normal(1.0))
f[a[i, j]] = tanh(x[i, j])
f[c[i]] = Maximum(a[i, m], m)
f[lse[i]] = log(Sum(exp(a[i, m] - c[i]), m)) + c[i]  # c's adjoint cancels
f[loss] = Sum(lse[i], i)
f.loss(loss)
program = f.build()
"""
DEAD_READER_OF_AN_OUTPUT = """\
a, h, e = symbols("a h e", cls=IndexedBase)
f = Builder("fuzz", sizes={n: 4, d: 3}, adjoints=("a",))
f.input(x[i, j], normal(1.0))
f[a[i, j]] = tanh(x[i, j])
f[h[i, j]] = tanh(a[i, j])
f[e[i, j]] = exp(a[i, j])  # nothing reads e: dx misses the path through h
f.output(a, h)
program = f.build()
"""
SELF_UPDATE = """\
a0, a1 = symbols("a0 a1", cls=IndexedBase)
f = Builder("fuzz", sizes={n: 4, d: 3}, adjoints=("a0",))
f.input(x[i, j], normal(1.0))
f.input(p[i, j], uniform(0.5, 2.0))
f[a0[i, j]] = x[i, j]/p[i, j]
f[a1[i, j]] = a0[i, j]/p[i, j]
f.output(a1, a0)  # da0 = da0 + da1/p; dp = -(da0 + da1/p)*a0/p is emitted as -a0*da0/p
program = f.build()
"""
COLLECTED = """\
a2 = symbols("a2", cls=IndexedBase)
s1, loss = symbols("s1 loss")
f = Builder("fuzz", sizes={n: 4, d: 3}, adjoints=("s1",))
f.input(x[i, j], normal(1.0))
f[s1] = Sum(Sum(x[i, j]**2, i), j)
f[a2[i, j]] = x[i, j]/(s1 + 1)
f[loss] = Sum(Sum(a2[i, j]**2, i), j)/n
f.loss(loss)
program = f.build()
"""
FOLDED_POWER = """\
a0, a1 = symbols("a0 a1", cls=IndexedBase)
f = Builder("fuzz", sizes={n: 4, d: 3}, adjoints=("a0",))
f.input(x[i, j], normal(1.0))
f[a0[i, j]] = tanh(x[i, j])
f[a1[i, j]] = tanh(a0[i, j])**2
f.output(a1, a0)
program = f.build()
"""
DIAGONAL_FOLD = """\
G, a2, a4 = symbols("G a2 a4", cls=IndexedBase)
s3 = symbols("s3")
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(x[i, j], normal(1.0))
f.input(p[i, j], uniform(0.5, 2.0))
f.input(w[j], uniform(0.5, 1.5))
f[G[m, j]] = Sum(x[k, m]*p[k, j], k)/n  # nothing reads G; dw reads G[j, j]
f[a2[i, j]] = p[i, j]/w[j]
f[s3] = Sum(Sum(a2[i, j]*x[i, j], i), j)/n
f[a4[i, j]] = a2[i, j]*s3
f.output(a4)
program = f.build()
"""
HYPERBOLIC_GATHER = """\
a, c = symbols("a c", cls=IndexedBase)
loss = symbols("loss")
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(x[i, j], normal(1.0))
f.labels(Z[i], d)
f[a[i, j]] = cosh(x[i, j])
f[c[i, j]] = a[i, j] - Sum(a[k, j], k)/n
f[loss] = -Sum(c[i, Z[i]], i)/n
f.loss(loss)
program = f.build()
"""
CONSTANT_LOSS = """\
loss = symbols("loss")
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(x[i, j], normal(1.0))
f[loss] = Sum(Sum(x[i, j] - Sum(x[k, j], k)/n, i), j)  # 0 for every x
f.loss(loss)
program = f.build()
"""
FOLDED_DIVISION = """\
a0, a1 = symbols("a0 a1", cls=IndexedBase)
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(x[i, j], normal(1.0))
f.input(p[i, j], uniform(0.5, 2.0))
f[a0[i, j]] = x[i, j]/p[i, j]
f[a1[i, j]] = p[i, j]**Rational(-1, 2)
f.output(a0, a1)
program = f.build()
"""
GROWING_FACT = """\
a0, a1 = symbols("a0 a1", cls=IndexedBase)
loss = symbols("loss")
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(p[i, j], uniform(0.5, 2.0))
f.input(w[j], uniform(0.5, 1.5))
f[a0[i, j]] = p[i, j] - Sum(p[k, j], k)/n
f[a1[i, j]] = a0[i, j] - Maximum(a0[k, j], k)
f[loss] = Sum(Sum(a1[i, j]*w[j], i), j)
f.loss(loss)
program = f.build()
"""
PARTLY_SHARED_FACTOR = """\
a, c = symbols("a c", cls=IndexedBase)
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(x[i, j], normal(1.0))
f[c[j]] = Sum(x[k, j], k)/n
f[a[i, j]] = tanh(x[i, j])
f.output(a, c)
program = f.build()
"""
UNFOLDED_REDUCTION = """\
a0, a1 = symbols("a0 a1", cls=IndexedBase)
loss = symbols("loss")
f = Builder("fuzz", sizes={n: 4, d: 3})
f.input(x[i, j], normal(1.0))
f.input(p[i, j], uniform(0.5, 2.0))
f.input(w[j], uniform(0.5, 1.5))
f[a0[i, j]] = x[i, j]/p[i, j]
f[a1[i, j]] = a0[i, j]/p[i, j]
f[loss] = Sum(Sum(a1[i, j]*w[j], i), j)
f.loss(loss)
program = f.build()
"""


@pytest.mark.parametrize("source", [DEAD_READER, CANCELLED_READER, DEAD_READER_OF_AN_OUTPUT],
                         ids=["dead-unbound", "cancelled-unbound", "dead-wrong-value"])
def test_materialised_adjoint_with_a_dead_reader(source):
    """Found by the fuzzer (fixed): a statement that reads a materialised intermediate but
    contributes nothing to its adjoint (dead, or its adjoint cancels) made the compact backward
    drop or misorder that adjoint: a wrong gradient, or an UnboundLocalError."""
    assert_checks(run(PREAMBLE + source)["program"])


def test_reuse_of_a_self_updated_adjoint():
    """Found by the fuzzer (fixed): emit.reuse_earlier replaced a later copy of 'da0 + da1/p' by
    da0, though 'da0 = da0 + da1/p' had overwritten da0 (an output read again, materialised)."""
    program = run(PREAMBLE + SELF_UPDATE)["program"]
    assert reuses_a_self_updated_adjoint(program)
    report = run_check(program, "float64")
    assert report.ok, [row for row in report.rows if not row.approximate]


def test_no_growth_power_folded_into_a_saved_name():
    """Found by the fuzzer, fold-power: a power folded into a saved name costs more than it saves: tanh(a0)**3 -> tanh(a0)*a1 (a1 = tanh(a0)**2). The simplifier now keeps the cheapest form it
    passes through (simplify.cheapest)."""
    (da0,) = [g for g in compact_gradients(run(PREAMBLE + FOLDED_POWER)["program"])
              if g.name == "a0"]
    assert growth(da0) is None or "fold-power" not in growth(da0)[2], growth(da0)


def test_fold_into_a_diagonal_read():
    """Found by the fuzzer (fixed): a fold rewrites Sum(x[k, j]*p[k, j], k)/n into G[j, j], the
    diagonal of G[m, j] = Sum(x[k, m]*p[k, j], k)/n; lowering now reads it by advanced indexing."""
    assert_checks(run(PREAMBLE + DIAGONAL_FOLD)["program"])


def test_hyperbolic_of_a_label_gather_lowers():
    """Found by the fuzzer (fixed): sinh(x[i, Z[k]]) in a compact gradient crashed lowering
    ('Transpose' object has no attribute 'arg'): SymPy's assumption queries probed array code."""
    assert_checks(run(PREAMBLE + HYPERBOLIC_GATHER)["program"])


def test_finite_differences_of_a_constant_loss_pass():
    """Found by the fuzzer (fixed): the rows of an analytically constant loss have a chain-rule
    scale of 0 and must not fail on the finite-difference estimate's rounding noise."""
    report = run_check(run(PREAMBLE + CONSTANT_LOSS)["program"], "float64")
    assert report.ok, [row for row in report.rows if not row.approximate]


def test_no_growth_partly_shared_factor_not_collected():
    """Found by the fuzzer, distribute: terms that share a factor are not collected again (factor only pulls out what all terms share): (1 - a**2)*da + dc/n -> -a**2*da + da + dc/n. The simplifier now keeps the cheapest form it
    passes through (simplify.cheapest)."""
    (dx,) = [g for g in compact_gradients(run(PREAMBLE + PARTLY_SHARED_FACTOR)["program"])
             if g.name == "x"]
    assert growth(dx) is None, growth(dx)


def test_no_growth_division_folded_into_a_saved_power():
    """Found by the fuzzer, fold: a division folded into a saved power costs more than it saves: da0/p -> a1**2*da0 (a1 = p**(-1/2)). The simplifier now keeps the cheapest form it
    passes through (simplify.cheapest)."""
    (dx,) = [g for g in compact_gradients(run(PREAMBLE + FOLDED_DIVISION)["program"])
             if g.name == "x"]
    assert growth(dx) is None, growth(dx)


def test_no_growth_reduction_fact_that_grows():
    """Found by the fuzzer, reduction-fact: a reduction fact trades a sum for a bigger expression: Sum(a1[i, j], i) -> -n*Maximum(a0[i, j], i). The simplifier now keeps the cheapest form it
    passes through (simplify.cheapest)."""
    (dw,) = [g for g in compact_gradients(run(PREAMBLE + GROWING_FACT)["program"])
             if g.name == "w"]
    assert growth(dw) is None, growth(dw)


def test_no_growth_collect_over_different_denominators():
    """Found by the fuzzer, collect: collecting over different denominators adds ops: 2*ds*x + 2*x/(n*(s + 1)**2) -> 2*(ds*n*(s + 1)**2 + 1)*x/(n*(s + 1)**2). The simplifier now keeps the cheapest form it
    passes through (simplify.cheapest)."""
    (dx,) = [g for g in compact_gradients(run(PREAMBLE + COLLECTED)["program"]) if g.name == "x"]
    assert growth(dx) is None or "collect" not in growth(dx)[2], growth(dx)


def test_no_growth_reduction_of_a_saved_name_unfolded():
    """Found by the fuzzer, unfold: a reduction of a saved name is unfolded into its definition and not folded back: Sum(a1[i, j], i) -> Sum(a0[i, j]/p[i, j], i). The simplifier now keeps the cheapest form it
    passes through (simplify.cheapest)."""
    (dw,) = [g for g in compact_gradients(run(PREAMBLE + UNFOLDED_REDUCTION)["program"])
             if g.name == "w"]
    assert growth(dw) is None, growth(dw)
