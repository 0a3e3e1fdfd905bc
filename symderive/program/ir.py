"""The program IR: a forward (or backward) pass as an ordered list of ``Assign`` statements over plain
SymPy index notation, wrapped in a frozen ``Program`` that knows its inputs, outputs, example sizes
and named constants, plus the index helpers every later stage shares. Validation is
``validate.validated``, the ``__setitem__`` front end ``builder.Builder``; a Program's LaTeX
display is attached by the API (the IR knows nothing of documents).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from functools import cached_property

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core.cache import CACHE

from .errors import ProgramError
from .ops import ArgMax


def remembered(maxsize: int):
    """``functools.lru_cache`` for functions of immutable SymPy expressions, registered with
    SymPy's cache so that ``sympy.core.cache.clear_cache()`` empties it too: a derivation timed
    cold (the benchmark clears SymPy's cache first) is then cold here as well."""
    def wrap(function):
        cached = functools.lru_cache(maxsize=maxsize, typed=True)(function)
        CACHE.append(cached)
        return cached
    return wrap


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

    @cached_property
    def name(self) -> str:
        return name_of(self.lhs)  # records are frozen: computed once, read constantly

    @property
    def indices(self) -> tuple:
        return indices_of(self.lhs)


@dataclass(frozen=True)
class Input(_Named):
    """A declared input: ``lhs`` carries its indices (and so its shape); integer inputs are labels."""

    lhs: sp.Expr
    init: Init | None = None
    classes: sp.Expr | None = None  # integer inputs hold values in range(classes)
    source: str = field(default="", compare=False, repr=False)  # "layer.py:12", for errors

    @property
    def integer(self) -> bool:
        return self.classes is not None


@dataclass(frozen=True)
class Assign(_Named):
    """``lhs = rhs``, or ``lhs += rhs`` when ``accumulate`` (fan-out in a backward pass)."""

    lhs: sp.Expr
    rhs: sp.Expr
    accumulate: bool = False
    # where the user wrote it ("layer.py:12"), for error messages; not part of the statement
    source: str = field(default="", compare=False, repr=False)

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
    double: bool = True  # whether the torch module derives and carries the double backward
    declared: tuple[str, ...] = ()
    references: tuple = field(default=(), compare=False)  # (kind, label, function) for check
    latex_names: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # name -> LaTeX
    # recognise.Rewrite records of the stable forms Builder put in place of written-out ones
    rewrites: tuple = field(default=(), compare=False)

    # -- lookups ---------------------------------------------------------------------------------
    # The program is frozen, so each lookup table is built once, on first use, and every lookup
    # after that is a dict or set access: the deriver asks these questions per atom it visits.
    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.inputs) + tuple(dict.fromkeys(s.name for s in self.body))

    @cached_property
    def name_set(self) -> frozenset[str]:
        """``names`` as a set, for membership tests."""
        return frozenset(self.names)

    @cached_property
    def _inputs_by_name(self) -> dict[str, Input]:
        found: dict[str, Input] = {}
        for x in self.inputs:
            found.setdefault(x.name, x)  # the first, as a scan would find it
        return found

    @cached_property
    def _definitions_by_name(self) -> dict[str, Assign]:
        found: dict[str, Assign] = {}
        for statement in self.body:
            if not statement.accumulate:
                found.setdefault(statement.name, statement)
        return found

    @cached_property
    def declared_position(self) -> dict[str, int]:
        """Where each name comes in ``declared`` (its first mention), for sorting by it."""
        position: dict[str, int] = {}
        for number, name in enumerate(self.declared):
            position.setdefault(name, number)
        return position

    def input(self, name: str) -> Input | None:
        return self._inputs_by_name.get(name)

    def definition(self, name: str) -> Assign | None:
        return self._definitions_by_name.get(name)

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
        if name not in self._axes:
            self._axes[name] = self._find_axes(name)
        return self._axes[name]

    @cached_property
    def _axes(self) -> dict[str, tuple[sp.Idx, ...]]:
        return {}

    def _find_axes(self, name: str) -> tuple[sp.Idx, ...]:
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



def name_of(expr: sp.Expr) -> str:
    if isinstance(expr, sp.Indexed):
        return _label_name(expr.base.label)
    if isinstance(expr, sp.IndexedBase):
        return _label_name(expr.label)
    if isinstance(expr, sp.Symbol):
        return expr.name
    raise ProgramError(f"'{expr}' is not a name: write name[indices] or a plain symbol")


def _label_name(label: sp.Expr) -> str:
    """An IndexedBase's name read off its label Symbol, not printed (printing dominated the
    deriver's profile); any other label is printed as before."""
    return label.name if isinstance(label, sp.Symbol) else str(label)


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


def affine_parts(index: sp.Expr) -> tuple[list[sp.Idx], sp.Expr] | None:
    """A shifted or sliding-window index as its indices and offset: ``p + u -> ([p, u], 0)``,
    ``j + H -> ([j], H)``; every index has coefficient 1 and the offset is free of indices. None
    for a plain Idx, a flattened index (``E*t + e``) or anything else."""
    if isinstance(index, sp.Idx) or not isinstance(index, sp.Add) or flatten_parts(index):
        return None
    parts, offset = [], sp.S.Zero
    for term in sp.Add.make_args(index):
        if isinstance(term, sp.Idx) and term not in parts:
            parts.append(term)
        elif not term.has(sp.Idx, sp.Indexed, sp.Function) and term.free_symbols:
            offset += term
        elif term.is_Integer:
            offset += term
        else:
            return None
    return (parts, offset) if parts else None


def linear_parts(index: sp.Expr) -> tuple[dict[sp.Idx, int], sp.Expr] | None:
    """An index as positive integer multiples of indices plus an offset free of indices:
    ``2*p + u -> ({p: 2, u: 1}, 0)``, ``p + u + 1 -> ({p: 1, u: 1}, 1)``: a strided or dilated
    window. None for a plain Idx or anything else (a label read, a product of indices)."""
    if isinstance(index, sp.Idx) or not isinstance(index, sp.Add):
        return None
    parts, offset = {}, sp.S.Zero
    for term in sp.Add.make_args(sp.expand(index)):
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, sp.Idx) and coeff.is_Integer and coeff > 0 and rest not in parts:
            parts[rest] = int(coeff)
        elif not term.has(sp.Idx, sp.Indexed, sp.Function):
            offset += term
        else:
            return None
    return (parts, offset) if parts else None


def affine_range(index: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
    """The smallest and largest value an affine index takes, strided ones (``2*p + u``)
    included (every Idx starts at 0)."""
    found = linear_parts(index)
    if found is None:
        return None
    parts, offset = found
    return offset, sp.expand(offset + sum(c * (idx_size(k) - 1) for k, c in parts.items()))


def fits_axis(index: sp.Expr, size: sp.Expr) -> bool:
    """Whether every value the affine ``index`` takes is inside an axis of ``size``, for every
    positive integer size (checked symbolically)."""
    bounds = affine_range(index)
    if bounds is None:
        return False
    low, high = bounds
    return sp.expand(low).is_nonnegative is True and \
        sp.expand(size - 1 - high).is_nonnegative is True


def idx_size(index: sp.Idx) -> sp.Expr:
    return _range_size(index.lower, index.upper)


@remembered(maxsize=1 << 12)
def _range_size(lower: sp.Expr, upper: sp.Expr) -> sp.Expr:
    # remembered: asked of every bound index at every step, and an expand is not cheap
    return sp.expand(upper - lower + 1)


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


@remembered(maxsize=1 << 15)
def array_names(expr: sp.Expr) -> frozenset[str]:
    """The names of the arrays ``expr`` reads, remembered (rules ask it of every term's factors
    at every fixpoint round)."""
    return frozenset(name_of(x) for x in expr.atoms(sp.Indexed))


def free_indices(expr: sp.Expr) -> list[sp.Idx]:
    """The Idx objects free in ``expr`` (not bound by a Sum, Maximum or ArgMax), in order."""
    return list(_free_indices(expr))


@remembered(maxsize=1 << 16)
def _free_indices(expr: sp.Expr) -> tuple[sp.Idx, ...]:
    # remembered: the rules ask this of the same atoms over and over, and subtrees are shared
    if isinstance(expr, sp.Idx):
        return (expr,)
    if isinstance(expr, ExprWithLimits):
        bound = {limit[0] for limit in expr.limits}
        return tuple(k for k in _free_indices(expr.function) if k not in bound)
    result: list[sp.Idx] = []
    for arg in expr.args:
        for k in _free_indices(arg):
            if k not in result:
                result.append(k)
    return tuple(result)


def lhs_index_set(lhs: sp.Expr) -> list[sp.Idx]:
    result = []
    for index in indices_of(lhs):
        result.extend([index] if isinstance(index, sp.Idx) else flatten_parts(index) or [])
    return result


def with_body(program: Program, body, **changes) -> Program:
    """A copy of ``program`` with another body (and other fields), unchecked: for derived programs."""
    return replace(program, body=tuple(body), **changes)
