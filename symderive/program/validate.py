"""Validation: ``Checker`` refuses a program symderive cannot use with one ``ProgramError`` sentence that
names the statement (or declaration) and says what to change, before anything is derived or
written. Names reach the emitted code, so they must be plain identifiers that shadow nothing the
code uses; constants must be plain finite numbers; and expressions may hold only the exact SymPy
classes the later stages know, never a subclass, since a subclass can carry its own printing hooks
(``_numpycode``, ``_sympystr``) and so write arbitrary text into a generated module.
"""
from __future__ import annotations

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from .ir import (
    Assign,
    Input,
    Program,
    ProgramError,
    _same,
    affine_range,
    fits_axis,
    flatten_parts,
    free_indices,
    idx_size,
    index_size,
    indices_of,
    lhs_index_set,
    name_of,
)
from .ops import (
    Maximum,
    Piecewise,
    known_names,
    op_for,
    piecewise_problem,
)
from .validate_names import DeclarationChecks
from .validate_whole import WholeProgramChecks


class Checker(DeclarationChecks, WholeProgramChecks):
    """The checks of design.md section 7, one method per kind of mistake. ``double``: whether the
    double backward's names are derived from the program and its name is the torch module's entry
    point, as for every program but the double backward's own gradient program."""

    def __init__(self, program: Program, double: bool = True):
        self.p = program
        self.double = double
        self.defined: dict[str, str] = {}  # name -> "input" / statement text
        self.kinds: dict[str, str] = {}  # every size, constant, array and index label name
        self.sizes: dict = {}

    def fail(self, where: str, message: str):
        raise ProgramError(f"{self.p.name}: {where}: {message}")

    def run(self):
        # the torch module's entry point is named after a program the user wrote
        self.check_name(self.p.name, "program", allow_reserved=not self.double)
        self.check_sizes_and_constants()
        for x in self.p.inputs:
            self.check_classes(self.where_input(x), x.lhs)
            if x.integer:
                self.check_classes(self.where_input(x), x.classes)
        for statement in self.p.body:
            self.check_classes(self.where(statement), statement.lhs)
            self.check_classes(self.where(statement), statement.rhs)
        self.check_spellings()
        self.check_latex_names()
        for x in self.p.inputs:
            self.check_input(x)
        for statement in self.p.body:
            self.check_statement(statement)
        self.check_outputs()
        self.check_adjoint_names()
        self.check_adjoints()
        self.check_memory()
        self.check_divisors()

    # -- declarations ----------------------------------------------------------------------------
    @staticmethod
    def where(s: Assign) -> str:
        return f"statement '{s}'" + (f" ({s.source})" if getattr(s, "source", "") else "")

    @staticmethod
    def where_input(x: Input) -> str:
        return f"input {x.lhs}" + (f" ({x.source})" if getattr(x, "source", "") else "")

    def check_indices_declared(self, where: str, lhs: sp.Expr):
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
                self.check_idx(where, k)

    def check_idx(self, where: str, k: sp.Idx):
        self.check_name(str(k.label), where)
        self.claim(where, str(k.label), "an index")
        if k.lower != 0:
            self.fail(where, f"index '{k}' must start at 0: write Idx('{k}', size)")
        missing = idx_size(k).free_symbols - set(self.sizes)
        if missing:
            self.fail(where, f"size {', '.join(map(str, missing))} of index '{k}' has no example "
                      "size; add it to sizes={...}")

    def check_input(self, x: Input):
        where = self.where_input(x)
        self.check_name(x.name, where)
        self.claim(where, x.name, "an array")
        if x.name in self.defined:
            self.fail(where, f"'{x.name}' is defined twice")
        for index in x.indices:
            if not isinstance(index, sp.Idx):
                self.fail(where, f"input indices must be plain Idx, not '{index}'; "
                          f"{self.whole_axis(x, index)}")
        self.check_indices_declared(where, x.lhs)
        if x.integer and set(sp.sympify(x.classes).free_symbols) - set(self.sizes):
            self.fail(where, f"the label range {x.classes} has no example size")
        self.defined[x.name] = "input"

    @staticmethod
    def whole_axis(x: Input, index: sp.Expr) -> str:
        """How to declare an input read through a window, a shift or a flattened index: over its
        whole axis, read as written in the statements."""
        taken = {str(k) for k in x.lhs.atoms(sp.Idx)}
        axis = next(name for name in ("l", "m", "q", "r", "s", "axis") if name not in taken)
        whole = x.lhs.base[tuple(sp.Idx(axis) if k == index else k for k in x.indices)]
        parts, bounds = flatten_parts(index), affine_range(index)
        if parts:  # the gradient of an unflattening read does not lower: split the axis instead
            split = x.lhs.base[tuple(p for k in x.indices for p in (parts if k == index else [k]))]
            return f"declare the input over the axes it stands for, {split}, and pass it reshaped"
        if bounds is None:
            return (f"declare the input over plain indices, {whole} with {axis} = "
                    f"Idx('{axis}', size), and read it in the statements")
        return (f"declare the input over its whole axis, {whole} with {axis} = "
                f"Idx('{axis}', {bounds[1] + 1}), and read it as {x.lhs}")

    def check_statement(self, s: Assign):
        where = self.where(s)
        self.check_name(s.name, where)
        self.claim(where, s.name, "an array")
        if s.name in self.defined and not s.accumulate:
            if self.defined[s.name] == "input":
                self.fail(where, f"'{s.name}' is an input; give the statement a new name")
            self.fail(where, f"'{s.name}' is defined twice; give the second definition a new name")
        self.check_indices_declared(where, s.lhs)
        lhs_set = lhs_index_set(s.lhs)
        for k in free_indices(s.rhs):
            if k not in lhs_set:
                self.fail(where, f"index '{k}' is free on the right but not on the left; sum over "
                          f"it (Sum(..., {k})) or add it to '{s.name}'")
        self.check_expr(where, s.rhs, lhs_set, value=True)
        self.defined[s.name] = str(s)

    def check_expr(self, where, expr, bound_outside, value):
        if isinstance(expr, sp.Indexed):
            self.check_read(where, expr, value)
            for index in expr.indices:
                self.check_expr(where, index, bound_outside, value=False)
            return
        if isinstance(expr, sp.Idx):
            return
        if isinstance(expr, sp.Symbol):
            if expr in self.sizes or expr in dict(self.p.constants):
                return
            if expr.name in self.defined:
                if indices_of(self.p.lhs(expr.name)):
                    self.fail(where, f"'{expr.name}' has indices; read it as "
                              f"{self.p.lhs(expr.name)}")
                return
            self.fail(where, f"'{expr}' is not defined: declare it as an input, a size or a "
                      "constant, or define it in an earlier statement")
        if isinstance(expr, ExprWithLimits):
            what = "Maximum" if isinstance(expr, Maximum) else "sum"
            if not isinstance(expr, (sp.Sum, Maximum)):
                self.fail(where, f"'{type(expr).__name__}' is not supported; use Sum or Maximum")
            if isinstance(expr, Maximum) and len(expr.limits) != 1:
                self.fail(where, "a Maximum over two indices (or two nested) is not supported; "
                          "take the maximum over one index in its own statement, then the maximum "
                          "of that")
            for limit in expr.limits:
                k = limit[0]
                if not isinstance(k, sp.Idx):
                    self.fail(where, f"{what} over '{k}' needs an Idx with a range, e.g. "
                              f"Idx('{k}', n)")
                if tuple(limit[1:]) != (k.lower, k.upper):
                    self.fail(where, f"{what} over the whole range of '{k}' (write "
                              f"{'Maximum' if what == 'Maximum' else 'Sum'}(..., {k})); a part of "
                              "a range is not supported")
                if isinstance(expr, Maximum) and k not in free_indices(expr.function):
                    self.fail(where, f"Maximum over '{k}' of something that does not use '{k}'")
                if k in bound_outside:
                    verb = "maximised" if what == "Maximum" else "summed"
                    self.fail(where, f"index '{k}' is {verb} over but is also free on the left; "
                              "use another index")
                self.check_idx(where, k)
            inner = list(bound_outside) + [limit[0] for limit in expr.limits]
            self.check_expr(where, expr.function, inner, value)
            return
        if isinstance(expr, sp.KroneckerDelta):
            for arg in expr.args:
                self.check_expr(where, arg, bound_outside, value=False)
            return
        if isinstance(expr, (sp.Max, sp.Min)) and len(expr.args) != 2:
            self.fail(where, f"{type(expr).__name__}(...) of {len(expr.args)} values is not "
                      f"supported; nest {type(expr).__name__} of two (for the maximum over an "
                      "index write Maximum(x[i, j], j))")
        if isinstance(expr, Piecewise):
            scalars = set(self.sizes) | set(dict(self.p.constants))
            problem = piecewise_problem(expr, lambda e: e.free_symbols <= scalars)
            if problem:
                self.fail(where, problem)
        if isinstance(expr, sp.Heaviside) and len(expr.args) == 2 and not expr.args[1].is_number:
            self.fail(where, f"the value at 0 of '{expr}' must be a number, e.g. Heaviside(x, 0)")
        if isinstance(expr, (sp.Function, sp.Pow)) and op_for(expr) is None:
            self.fail(where, f"function '{expr.func}' has no derivative rule; symderive knows "
                      f"{known_names()} and +, -, *, /, powers, Sum, Maximum")
        if isinstance(expr, sp.Pow) and any(free_indices(expr.exp)) or (
                isinstance(expr, sp.Pow) and expr.exp.atoms(sp.Indexed)):
            self.fail(where, f"the exponent of '{expr}' must be a constant")
        for arg in expr.args:
            self.check_expr(where, arg, bound_outside, value)

    def check_read(self, where, read: sp.Indexed, value):
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
            bounds = affine_range(index)
            if bounds is not None:  # a shifted or sliding-window read: x[i, p + u], x[i, j + H]
                offset = bounds[0]
                if offset.free_symbols - set(self.sizes) or offset.is_integer is not True:
                    self.fail(where, f"the offset {offset} of index '{index}' must be a whole "
                              "number of sizes and integers, like H or 2*H + 1")
                if not fits_axis(index, size):
                    self.fail(where, f"index '{index}' takes the values {bounds[0]} to "
                              f"{bounds[1]}, which are not all inside axis {axis} of '{name}' "
                              f"(size {size}); size the axis to hold them (e.g. P + U - 1 for "
                              "p + u) or read fewer")
                continue
            if isinstance(index, sp.Idx) and not _same(idx_size(index), size) and \
                    sp.expand(size - idx_size(index)).is_nonnegative is True:
                continue  # a leading part of the axis: x[i, j] with j over H of 2*H
            try:
                used = index_size(index, self.p)
            except ProgramError as error:
                self.fail(where, str(error))
            if not _same(used, size):
                self.fail(where, f"index '{index}' ranges over {used}, but axis {axis} of "
                          f"'{name}' has size {size}")



def validated(program: Program) -> Program:
    """``program`` unchanged, once ``Checker`` finds it well formed (else a ``ProgramError``)."""
    Checker(program).run()
    return program
