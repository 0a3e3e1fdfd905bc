"""The program IR: a forward (or backward) pass as an ordered list of ``Assign`` statements over plain
SymPy index notation, wrapped in a frozen ``Program`` that knows its inputs, outputs, example sizes
and named constants, and that validates itself so a bad derivation fails with one clear sentence.
``Builder`` is the ``__setitem__`` front end a derivation file uses: ``layer[mu[j]] = Sum(x[i, j], i)/n``.
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field, replace

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from .ops import ArgMax, Maximum, known_names, op_for

# Names the emitted modules use for themselves; a derivation may not reuse them.
RESERVED = frozenset(
    {"np", "torch", "values", "grads", "dtype", "ctx", "saved", "forward", "backward", "SAVED",
     "INPUTS", "OUTPUTS", "GRADIENTS", "math", "F"}
)


class ProgramError(ValueError):
    """A derivation symderive cannot use; the message names the statement and what to change."""


@dataclass(frozen=True)
class Init:
    """How ``symderive check`` draws example values for an input."""

    kind: str  # "normal", "uniform" or "labels"
    low: float = 0.0  # normal: mean; uniform: lower bound
    high: float = 1.0  # normal: standard deviation; uniform: upper bound


def normal(std: float = 1.0, mean: float = 0.0) -> Init:
    """Gaussian example values: ``normal(0.1)`` is ``randn * 0.1``; ``normal(0.1, 1.0)`` is BN's gain."""
    return Init("normal", float(mean), float(std))


def uniform(low: float, high: float) -> Init:
    """Uniform example values, e.g. ``uniform(0.5, 2.0)`` for an input that feeds a log."""
    return Init("uniform", float(low), float(high))


class _Named:
    """A record whose ``lhs`` (``name[indices]`` or a scalar symbol) gives its name and indices."""

    lhs: sp.Expr

    @property
    def name(self) -> str:
        return name_of(self.lhs)

    @property
    def indices(self) -> tuple:
        return indices_of(self.lhs)


@dataclass(frozen=True)
class Input(_Named):
    """A declared input: ``lhs`` carries its indices (and so its shape); integer inputs are labels."""

    lhs: sp.Expr
    init: Init | None = None
    classes: sp.Expr | None = None  # integer inputs hold values in range(classes)

    @property
    def integer(self) -> bool:
        return self.classes is not None


@dataclass(frozen=True)
class Assign(_Named):
    """``lhs = rhs``, or ``lhs += rhs`` when ``accumulate`` (fan-out in a backward pass)."""

    lhs: sp.Expr
    rhs: sp.Expr
    accumulate: bool = False

    def __str__(self) -> str:
        return f"{self.lhs} {'+=' if self.accumulate else '='} {self.rhs}"


@dataclass(frozen=True)
class Program:
    """A validated program. ``declared`` is the order inputs and statements were written in."""

    name: str
    inputs: tuple[Input, ...]
    body: tuple[Assign, ...]
    outputs: tuple[str, ...]
    sizes: tuple[tuple[sp.Symbol, int], ...] = ()
    constants: tuple[tuple[sp.Symbol, float], ...] = ()
    loss: bool = False  # the single output is a scalar loss whose adjoint is 1
    adjoints: str | tuple[str, ...] = "inputs"  # which adjoints the backward materialises
    declared: tuple[str, ...] = ()
    references: tuple = field(default=(), compare=False)  # (kind, label, function) for check

    # -- lookups ---------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.inputs) + tuple(dict.fromkeys(s.name for s in self.body))

    def input(self, name: str) -> Input | None:
        return next((x for x in self.inputs if x.name == name), None)

    def definition(self, name: str) -> Assign | None:
        return next((s for s in self.body if s.name == name and not s.accumulate), None)

    def lhs(self, name: str) -> sp.Expr:
        found = self.input(name) or self.definition(name)
        if found is None:
            raise KeyError(name)
        return found.lhs

    def shape(self, name: str) -> tuple:
        return tuple(index_size(k, self) for k in indices_of(self.lhs(name)))

    def integer(self, name: str) -> bool:
        found = self.input(name)
        return found is not None and found.integer

    def example_sizes(self) -> dict:
        return dict(self.sizes)

    def axes(self, name: str) -> tuple[sp.Idx, ...]:
        """One plain ``Idx`` per axis of ``name``: its declared indices, except that a flattened
        axis (``embcat[i, E*t + e]``) takes the index its first reader uses for it."""
        result = []
        for position, index in enumerate(indices_of(self.lhs(name))):
            if isinstance(index, sp.Idx):
                result.append(index)
                continue
            size = index_size(index, self)
            reader = next((k for k in self._reader_indices(name, position)
                           if isinstance(k, sp.Idx) and _same(index_size(k, self), size)), None)
            result.append(reader or sp.Idx("_".join(str(k) for k in flatten_parts(index)), size))
        return tuple(result)

    def _reader_indices(self, name: str, position: int):
        for statement in self.body:
            for read in statement.rhs.atoms(sp.Indexed):
                if name_of(read) == name:
                    yield read.indices[position]

    # -- validation ------------------------------------------------------------------------------
    def check(self) -> Program:
        """Raise ``ProgramError`` unless the program is well formed; return it unchanged."""
        _Checker(self).run()
        return self


def name_of(expr: sp.Expr) -> str:
    if isinstance(expr, sp.Indexed):
        return str(expr.base.label)
    if isinstance(expr, sp.IndexedBase):
        return str(expr.label)
    if isinstance(expr, sp.Symbol):
        return expr.name
    raise ProgramError(f"'{expr}' is not a name: write name[indices] or a plain symbol")


def indices_of(expr: sp.Expr) -> tuple:
    return tuple(expr.indices) if isinstance(expr, sp.Indexed) else ()


def _same(a: sp.Expr, b: sp.Expr) -> bool:
    return sp.expand(a - b) == 0


def flatten_parts(index: sp.Expr) -> list[sp.Idx] | None:
    """The indices of a row-major flattened index, outermost first: ``E*t + e -> [t, e]`` when e
    ranges over E. None when ``index`` is not such a combination."""
    terms = sp.Add.make_args(sp.expand(index))
    parts = []
    for term in terms:
        coeff, rest = term.as_coeff_Mul()
        found = [f for f in sp.Mul.make_args(rest) if isinstance(f, sp.Idx)]
        if len(found) != 1:
            return None
        parts.append((coeff * sp.Mul(*[f for f in sp.Mul.make_args(rest) if f is not found[0]]),
                      found[0]))
    ordered, stride = [], sp.Integer(1)
    while parts:
        match = next((p for p in parts if _same(p[0], stride)), None)
        if match is None:
            return None
        parts.remove(match)
        ordered.insert(0, match[1])
        stride = stride * idx_size(match[1])
    return ordered if len(ordered) > 1 else None


def idx_size(index: sp.Idx) -> sp.Expr:
    return sp.expand(index.upper - index.lower + 1)


def index_size(index: sp.Expr, program: Program) -> sp.Expr:
    """The number of values an index expression takes: an Idx's range, a label's classes, or the
    product of a flattened index's ranges."""
    if isinstance(index, sp.Idx):
        return idx_size(index)
    if isinstance(index, sp.Indexed):
        found = program.input(name_of(index))
        if found is not None and found.integer:
            return found.classes
    if isinstance(index, ArgMax):
        return idx_size(index.limits[0][0])
    parts = flatten_parts(index)
    if parts:
        return sp.Mul(*[idx_size(k) for k in parts])
    raise ProgramError(f"index '{index}' is not an Idx, an integer label read or a flattened "
                       "index like E*t + e")


def free_indices(expr: sp.Expr) -> list[sp.Idx]:
    """The Idx objects free in ``expr`` (not bound by a Sum, Maximum or ArgMax), in order."""
    if isinstance(expr, sp.Idx):
        return [expr]
    if isinstance(expr, ExprWithLimits):
        bound = {limit[0] for limit in expr.limits}
        return [k for k in free_indices(expr.function) if k not in bound]
    result: list[sp.Idx] = []
    for arg in expr.args:
        for k in free_indices(arg):
            if k not in result:
                result.append(k)
    return result


def lhs_index_set(lhs: sp.Expr) -> list[sp.Idx]:
    result = []
    for index in indices_of(lhs):
        result.extend([index] if isinstance(index, sp.Idx) else flatten_parts(index) or [])
    return result


class _Checker:
    """The checks of design.md section 7, one method per kind of mistake."""

    def __init__(self, program: Program):
        self.p = program
        self.defined: dict[str, str] = {}  # name -> "input" / statement text
        self.kinds: dict[str, str] = {}  # every size, constant, array and index label name

    def fail(self, where: str, message: str):
        raise ProgramError(f"{self.p.name}: {where}: {message}")

    def run(self):
        self.check_name(self.p.name, "program", allow_reserved=True)
        sizes = dict(self.p.sizes)
        for symbol, value in sizes.items():
            self.check_name(str(symbol), f"size {symbol}")
            if not (isinstance(value, int) and value > 0):
                self.fail(f"size {symbol}", f"example size must be a positive integer, not {value!r}")
        for symbol, value in self.p.constants:
            self.check_name(str(symbol), f"constant {symbol}")
            if not isinstance(value, (int, float)):
                self.fail(f"constant {symbol}", f"its value must be a number, not {value!r}")
        for symbol in sizes:
            self.claim(f"size {symbol}", str(symbol), "a size")
        for symbol, _ in self.p.constants:
            self.claim(f"constant {symbol}", str(symbol), "a constant")
        for x in self.p.inputs:
            self.check_input(x, sizes)
        for statement in self.p.body:
            self.check_statement(statement, sizes)
        if not self.p.outputs:
            self.fail("outputs", "declare the output with .loss(name) or .output(name, ...)")
        for name in self.p.outputs:
            if name not in self.defined:
                self.fail("outputs", f"output '{name}' is not defined by any statement")
        if self.p.loss and indices_of(self.p.lhs(self.p.outputs[0])):
            self.fail("loss", f"the loss '{self.p.outputs[0]}' must be a scalar (no indices); "
                      "sum or average it over its indices")
        for name in self.defined:
            adjoint = "d" + name
            if adjoint in self.defined:
                self.fail(f"name '{adjoint}'", f"clashes with the adjoint of '{name}'; rename it")
        if self.p.adjoints not in ("all", "inputs"):
            if isinstance(self.p.adjoints, str):
                self.fail("adjoints", f"'{self.p.adjoints}' is not 'all', 'inputs' or a tuple of "
                          "names")
            for name in self.p.adjoints:
                if name not in self.defined or self.p.integer(name):
                    self.fail("adjoints", f"'{name}' is not a float input or a defined name")

    def claim(self, where: str, name: str, kind: str):
        """Sizes, constants, arrays and index labels share the emitted module's namespace."""
        other = self.kinds.setdefault(name, kind)
        if other != kind:
            self.fail(where, f"'{name}' names both {other} and {kind}; rename one")

    def check_name(self, name: str, what: str, allow_reserved: bool = False):
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            self.fail(what, f"'{name}' must be a Python identifier, not a keyword, and not start "
                      "with '_'")
        if not allow_reserved and name in RESERVED:
            self.fail(what, f"'{name}' is reserved by the emitted code; rename it")

    def check_indices_declared(self, where: str, lhs: sp.Expr, sizes: dict):
        seen = []
        for index in indices_of(lhs):
            parts = [index] if isinstance(index, sp.Idx) else flatten_parts(index)
            if parts is None:
                self.fail(where, f"lhs index '{index}' must be an Idx or a flattened index like "
                          "E*t + e")
            for k in parts:
                if k in seen:
                    self.fail(where, f"index '{k}' appears twice on the lhs")
                seen.append(k)
                self.check_idx(where, k, sizes)

    def check_idx(self, where: str, k: sp.Idx, sizes: dict):
        self.check_name(str(k.label), where)
        self.claim(where, str(k.label), "an index")
        if k.lower != 0:
            self.fail(where, f"index '{k}' must start at 0: write Idx('{k}', size)")
        missing = idx_size(k).free_symbols - set(sizes)
        if missing:
            self.fail(where, f"size {', '.join(map(str, missing))} of index '{k}' has no example "
                      "size; add it to sizes={...}")

    def check_input(self, x: Input, sizes: dict):
        where = f"input {x.lhs}"
        self.check_name(x.name, where)
        self.claim(where, x.name, "an array")
        if x.name in self.defined:
            self.fail(where, f"'{x.name}' is defined twice")
        for index in x.indices:
            if not isinstance(index, sp.Idx):
                self.fail(where, f"input indices must be plain Idx, not '{index}'")
        self.check_indices_declared(where, x.lhs, sizes)
        if x.integer and set(sp.sympify(x.classes).free_symbols) - set(sizes):
            self.fail(where, f"the label range {x.classes} has no example size")
        self.defined[x.name] = "input"

    def check_statement(self, s: Assign, sizes: dict):
        where = f"statement '{s}'"
        self.check_name(s.name, where)
        self.claim(where, s.name, "an array")
        if s.name in self.defined and not s.accumulate:
            self.fail(where, f"'{s.name}' is defined twice; give the second definition a new name")
        self.check_indices_declared(where, s.lhs, sizes)
        lhs_set = lhs_index_set(s.lhs)
        for k in free_indices(s.rhs):
            if k not in lhs_set:
                self.fail(where, f"index '{k}' is free on the right but not on the left; sum over "
                          f"it (Sum(..., {k})) or add it to '{s.name}'")
        self.check_expr(where, s.rhs, lhs_set, sizes, value=True)
        self.defined[s.name] = str(s)

    def check_expr(self, where, expr, bound_outside, sizes, value):
        if isinstance(expr, sp.Indexed):
            self.check_read(where, expr, sizes, value)
            for index in expr.indices:
                self.check_expr(where, index, bound_outside, sizes, value=False)
            return
        if isinstance(expr, sp.Idx):
            return
        if isinstance(expr, sp.Symbol):
            if expr in dict(self.p.sizes) or expr in dict(self.p.constants):
                return
            if expr.name in self.defined:
                if indices_of(self.p.lhs(expr.name)):
                    self.fail(where, f"'{expr.name}' has indices; read it as {self.p.lhs(expr.name)}")
                return
            self.fail(where, f"'{expr}' is not defined: declare it as an input, a size or a "
                      "constant, or define it in an earlier statement")
        if isinstance(expr, ExprWithLimits):
            if not isinstance(expr, (sp.Sum, Maximum)):
                self.fail(where, f"'{type(expr).__name__}' is not supported; use Sum or Maximum")
            if isinstance(expr, Maximum) and len(expr.limits) != 1:
                self.fail(where, "Maximum takes one index; nest two for a maximum over two")
            for limit in expr.limits:
                k = limit[0]
                if not isinstance(k, sp.Idx):
                    self.fail(where, f"sum over '{k}' needs an Idx with a range, e.g. Idx('{k}', n)")
                if tuple(limit[1:]) != (k.lower, k.upper):
                    self.fail(where, f"sum over the whole range of '{k}' (write Sum(..., {k})); "
                              "a part of a range is not supported")
                if isinstance(expr, Maximum) and k not in free_indices(expr.function):
                    self.fail(where, f"Maximum over '{k}' of something that does not use '{k}'")
                if k in bound_outside:
                    self.fail(where, f"index '{k}' is summed over but is also free on the left; "
                              "sum over another index")
                self.check_idx(where, k, sizes)
            inner = list(bound_outside) + [limit[0] for limit in expr.limits]
            self.check_expr(where, expr.function, inner, sizes, value)
            return
        if isinstance(expr, sp.KroneckerDelta):
            for arg in expr.args:
                self.check_expr(where, arg, bound_outside, sizes, value=False)
            return
        if isinstance(expr, (sp.Function, sp.Pow)) and op_for(expr) is None:
            self.fail(where, f"function '{expr.func}' has no derivative rule; symderive knows "
                      f"{known_names()} and +, -, *, /, powers, Sum, Maximum")
        if isinstance(expr, sp.Pow) and any(free_indices(expr.exp)) or (
                isinstance(expr, sp.Pow) and expr.exp.atoms(sp.Indexed)):
            self.fail(where, f"the exponent of '{expr}' must be a constant")
        for arg in expr.args:
            self.check_expr(where, arg, bound_outside, sizes, value)

    def check_read(self, where, read: sp.Indexed, sizes, value):
        name = name_of(read)
        if name not in self.defined:
            self.fail(where, f"'{name}' is not defined: declare it as an input or define it in an "
                      "earlier statement")
        if self.p.integer(name) and value:
            self.fail(where, f"'{name}' is an integer label; it can only index another array "
                      f"(like x[i, {read}]), not be used as a value or differentiated")
        shape = self.p.shape(name)
        if len(shape) != len(read.indices):
            self.fail(where, f"'{name}' has {len(shape)} indices, but '{read}' uses "
                      f"{len(read.indices)}")
        for axis, (index, size) in enumerate(zip(read.indices, shape)):
            try:
                used = index_size(index, self.p)
            except ProgramError as error:
                self.fail(where, str(error))
            if not _same(used, size):
                self.fail(where, f"index '{index}' ranges over {used}, but axis {axis} of "
                          f"'{name}' has size {size}")


class Builder:
    """Collects a derivation's declarations and statements, then ``build()`` a checked Program.

    >>> from sympy import IndexedBase, Idx, Sum, symbols
    >>> n, d = symbols("n d", integer=True, positive=True)
    >>> i, j = Idx("i", n), Idx("j", d)
    >>> x, mu = IndexedBase("x"), IndexedBase("mu")
    >>> layer = Builder("mean", sizes={n: 4, d: 3})
    >>> layer.input(x[i, j])
    >>> layer[mu[j]] = Sum(x[i, j], i) / n
    >>> layer.output(mu)
    >>> layer.build().body[0]
    Assign(lhs=mu[j], rhs=Sum(x[i, j], (i, 0, n - 1))/n, accumulate=False)
    """

    def __init__(self, name: str, *, sizes: dict, constants: dict | None = None,
                 adjoints: str | tuple = "inputs"):
        self.name = name
        self.sizes = dict(sizes)
        self.constants = dict(constants or {})
        self.adjoints = adjoints
        self.inputs: list[Input] = []
        self.body: list[Assign] = []
        self.outputs: list[str] = []
        self.declared: list[str] = []
        self.is_loss = False
        self.references: list = []

    def input(self, lhs: sp.Expr, init: Init | None = None) -> None:
        """Declare a float input with the indices it is read with, e.g. ``W1[k, j]``."""
        self._declare(Input(lhs, init or normal()))

    def labels(self, lhs: sp.Expr, classes: sp.Expr) -> None:
        """Declare an integer input whose values lie in ``range(classes)``, e.g. ``Y[i]``."""
        self._declare(Input(lhs, Init("labels"), sp.sympify(classes)))

    def _declare(self, x: Input) -> None:
        if not isinstance(x.lhs, (sp.Indexed, sp.Symbol)):
            raise ProgramError(f"{self.name}: input '{x.lhs}' must be written name[indices]")
        self.inputs.append(x)
        self.declared.append(x.name)

    def __setitem__(self, lhs: sp.Expr, rhs: sp.Expr) -> None:
        if isinstance(lhs, sp.IndexedBase):
            raise ProgramError(f"{self.name}: '{lhs} = {rhs}': write the lhs with its indices, "
                               f"like {lhs}[i, j]")
        if not isinstance(lhs, (sp.Indexed, sp.Symbol)):
            raise ProgramError(f"{self.name}: '{lhs} = {rhs}': the lhs must be name[indices] or a "
                               "scalar symbol")
        self.body.append(Assign(lhs, sp.sympify(rhs)))
        self.declared.append(name_of(lhs))

    def include(self, layer: Program, **names: str) -> None:
        """Append a layer's statements, renaming its names by ``names`` (``Y="Yb"``). Its inputs
        must already be declared or defined here; its float inputs and its outputs become layer
        boundaries whose adjoints the compact backward materialises.

        >>> mlp.include(load(HERE / "batchnorm.py"))  # doctest: +SKIP
        """
        rename = {}
        for old, new in names.items():
            rename[sp.IndexedBase(old)] = sp.IndexedBase(new)
            rename[sp.Symbol(old)] = sp.Symbol(new)
        for x in layer.inputs:
            name = names.get(x.name, x.name)
            if name not in self.declared:
                raise ProgramError(f"{self.name}: include {layer.name}: its input '{name}' is not "
                                   "declared or defined yet")
        for symbol, value in layer.constants:
            if self.constants.setdefault(symbol, value) != value:
                raise ProgramError(f"{self.name}: include {layer.name}: constant {symbol} is "
                                   f"{self.constants[symbol]} here but {value} in the layer")
        for statement in layer.body:
            self[statement.lhs.xreplace(rename)] = statement.rhs.xreplace(rename)
        boundaries = [names.get(x.name, x.name) for x in layer.inputs if not x.integer]
        boundaries += [names.get(x, x) for x in layer.outputs if not layer.loss]
        if self.adjoints != "all":
            chosen = [] if isinstance(self.adjoints, str) else list(self.adjoints)
            self.adjoints = tuple(dict.fromkeys(chosen + boundaries))

    def loss(self, name: sp.Expr) -> None:
        """Declare the scalar loss; its adjoint is 1."""
        self.outputs = [name_of(name)]
        self.is_loss = True

    def output(self, *names: sp.Expr) -> None:
        """Declare layer outputs; each gets an upstream adjoint ``d<name>``."""
        self.outputs = [name_of(x) for x in names]
        self.is_loss = False

    def reference(self, label: str, forward) -> None:
        """An independent torch forward for ``check``: ``forward(*inputs)`` returns the outputs
        (e.g. ``F.batch_norm``); check differentiates it with autograd and compares."""
        self.references.append(("forward", label, forward))

    def closed_form(self, label: str, gradients) -> None:
        """Known gradient formulas for ``check``: ``gradients(values, *upstream)`` returns a dict
        by input name, ``values`` being every forward value by name (the makemore one-liners)."""
        self.references.append(("gradients", label, gradients))

    def build(self) -> Program:
        program = Program(
            name=self.name, inputs=tuple(self.inputs), body=tuple(self.body),
            outputs=tuple(self.outputs), sizes=tuple(self.sizes.items()),
            constants=tuple(self.constants.items()), loss=self.is_loss,
            adjoints=self.adjoints if isinstance(self.adjoints, str) else tuple(self.adjoints),
            declared=tuple(self.declared), references=tuple(self.references))
        return program.check()


def with_body(program: Program, body, **changes) -> Program:
    """A copy of ``program`` with another body (and other fields), unchecked: for derived programs."""
    return replace(program, body=tuple(body), **changes)
