"""Validation: ``Checker`` refuses a program symderive cannot use with one ``ProgramError`` sentence that
names the statement (or declaration) and says what to change, before anything is derived or
written. Names reach the emitted code, so they must be plain identifiers that shadow nothing the
code uses; constants must be plain finite numbers; and expressions may hold only the exact SymPy
classes the later stages know, never a subclass, since a subclass can carry its own printing hooks
(``_numpycode``, ``_sympystr``) and so write arbitrary text into a generated module.
"""
from __future__ import annotations

import keyword
import math
import unicodedata

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core import numbers

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
from .latex_spelling import spelling_problem
from .names import RESERVED, derived_names, function_class_name
from .ops import (
    CONDITION_NODES,
    OPS,
    ArgMax,
    Maximum,
    Piecewise,
    known_names,
    op_for,
    piecewise_problem,
)

# Example sizes are what ``check`` allocates: more elements than this in the inputs, statements
# and the largest intermediate a statement implies is refused rather than exhausting memory.
MEMORY_BUDGET = 2**26


# The exact classes a program may contain (``type(x) is C``, never a subclass: see above).
_NUMBERS = frozenset({sp.Integer, sp.Rational, sp.Float, numbers.Zero, numbers.One,
                      numbers.NegativeOne, numbers.Half, numbers.Pi, numbers.Exp1})


_NODES = frozenset({sp.Symbol, sp.Idx, sp.IndexedBase, sp.Indexed, sp.Tuple, sp.Add, sp.Mul,
                    sp.Pow, sp.Sum, sp.KroneckerDelta, Maximum, ArgMax, *OPS,
                    *CONDITION_NODES}) | _NUMBERS  # conditions only inside a Piecewise


_NOT_FINITE = {numbers.NaN: "nan (not a number)", numbers.Infinity: "oo (infinity)",
               numbers.NegativeInfinity: "-oo (minus infinity)",
               numbers.ComplexInfinity: "zoo (complex infinity: a division by zero)",
               numbers.ImaginaryUnit: "I (the imaginary unit; values are real)"}


def number_problem(value) -> str | None:
    """Why ``value`` cannot be a constant (None if it can): only a plain finite int or float, or
    an exact SymPy integer, rational or float, is printed into emitted code.

    >>> number_problem(1e-5), number_problem(True)
    (None, 'True is a bool, not a number')
    """
    kind = type(value)
    if kind is bool:
        return f"{value!r} is a bool, not a number"
    if kind not in (int, float) and kind not in _NUMBERS - {numbers.Pi, numbers.Exp1}:
        return (f"its value is a {kind.__module__}.{kind.__qualname__}; write a plain number "
                "(an int or float, or a SymPy Integer, Rational or Float)")
    if not math.isfinite(float(value)):
        return f"{float(value)!r} is not a finite number"
    return None


def _assumptions(symbol: sp.Symbol) -> str:
    given = getattr(symbol, "_assumptions_orig", None) or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(given.items())) or "no assumptions"


def _describe(expr) -> str:
    kind = type(expr)
    return f"{kind.__module__}.{kind.__qualname__}"


class Checker:
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

    # -- names -----------------------------------------------------------------------------------
    def claim(self, where: str, name: str, kind: str):
        """Sizes, constants, arrays and index labels share the emitted module's namespace."""
        other = self.kinds.setdefault(name, kind)
        if other != kind:
            self.fail(where, f"'{name}' names both {other} and {kind}; rename one")

    def check_normal_form(self, name: str, what: str):
        normal = unicodedata.normalize("NFKC", name)
        if normal != name:
            self.fail(what, f"'{name}' changes under Unicode NFKC normalisation, which Python "
                      f"applies to identifiers (it reads '{normal}'); write '{normal}'")

    def check_name(self, name, what: str, allow_reserved: bool = False):
        if not isinstance(name, str):
            self.fail(what, f"the name must be a string, not {_describe(name)}")
        self.check_normal_form(name, what)
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            self.fail(what, f"'{name}' must be a Python identifier, not a keyword, and not start "
                      "with '_'")
        if not allow_reserved and (name in RESERVED or name in (
                function_class_name(self.p.name), function_class_name(self.p.name)[
                    :-len("Function")] + "Backward")):
            self.fail(what, f"'{name}' is reserved by the emitted code; rename it")

    def check_sizes_and_constants(self):
        for symbol, value in self.p.sizes:
            where = f"size {symbol}"
            if type(symbol) is not sp.Symbol:
                self.fail(where, f"a size must be a SymPy Symbol, e.g. symbols('n', integer=True, "
                          f"positive=True), not {_describe(symbol)}")
            self.check_name(symbol.name, where)
            if type(value) is bool or type(value) is not int:
                hint = f"write int({value!r})" if type(value).__module__ == "numpy" else \
                    "write a positive Python int, e.g. 4"
                self.fail(where, f"example size {value!r} is a {type(value).__name__}; {hint}")
            if value <= 0:
                self.fail(where, f"example size must be a positive integer, not {value!r}")
            self.sizes[symbol] = value
        for symbol, value in self.p.constants:
            where = f"constant {symbol}"
            if type(symbol) is not sp.Symbol:
                self.fail(where, f"a constant must be a SymPy Symbol, e.g. symbols('eps'), not "
                          f"{_describe(symbol)}")
            self.check_name(symbol.name, where)
            problem = number_problem(value)
            if problem:
                self.fail(where, problem)
        for symbol in self.sizes:
            self.claim(f"size {symbol}", symbol.name, "a size")
        for symbol, _ in self.p.constants:
            self.claim(f"constant {symbol}", symbol.name, "a constant")

    def check_spellings(self):
        """Two different SymPy objects that print alike would be one name in emitted code."""
        seen: dict[str, tuple] = {}  # printed name -> (object, where)

        def visit(obj, where):
            name = str(obj.label) if isinstance(obj, (sp.Idx, sp.IndexedBase)) else obj.name
            self.check_normal_form(name, where)
            key = (type(obj).__name__, name)
            first = seen.setdefault(key, (obj, where))
            if first[0] != obj:
                if isinstance(obj, sp.Symbol):
                    detail = (f"one with {_assumptions(first[0])} ({first[1]}), one with "
                              f"{_assumptions(obj)}")
                elif isinstance(obj, sp.Idx):
                    detail = (f"ranges {idx_size(first[0])} ({first[1]}) and {idx_size(obj)}")
                else:
                    detail = f"'{sp.srepr(first[0])}' ({first[1]}) and '{sp.srepr(obj)}'"
                self.fail(where, f"two different {type(obj).__name__} objects print as '{name}': "
                          f"{detail}; create it once and use that one everywhere")

        for symbol in self.sizes:
            visit(symbol, f"size {symbol}")
        for symbol, _ in self.p.constants:
            visit(symbol, f"constant {symbol}")
        records = [(self.where_input(x), [x.lhs]) for x in self.p.inputs]
        records += [(self.where(s), [s.lhs, s.rhs]) for s in self.p.body]
        for x in self.p.inputs:
            if x.integer:
                records.append((self.where_input(x), [x.classes]))
        for where, exprs in records:
            for expr in exprs:
                expr = sp.sympify(expr)
                # an array's label is compared by kind (claim), not here: x[i] beside a size x
                labels = {base.label for base in expr.atoms(sp.IndexedBase)}
                for atom in sorted(expr.atoms(sp.Symbol, sp.Idx, sp.IndexedBase), key=str):
                    if atom not in labels:
                        visit(atom, where)

    def check_latex_names(self):
        """The document pastes each given LaTeX spelling into its math and pdflatex obeys any TeX
        in it, so only the whitelisted math of ``latex_spelling`` may be given."""
        for pair in self.p.latex_names:
            if not (isinstance(pair, tuple) and len(pair) == 2 and
                    all(type(part) is str for part in pair)):
                self.fail("latex", f"{pair!r} is not a (name, LaTeX) pair of strings; give "
                          "spellings as latex(name=r\"\\hat{x}\")")
            name, spelling = pair
            problem = spelling_problem(spelling)
            if problem:
                self.fail(f"latex({name}=...)", problem)

    # -- classes ---------------------------------------------------------------------------------
    def check_classes(self, where: str, expr):
        kind = type(expr)
        if kind in _NOT_FINITE:
            self.fail(where, f"{_NOT_FINITE[kind]} cannot appear in a statement; write a finite "
                      "real expression (is something divided by zero?)")
        if kind not in _NODES:
            self.fail(where, self.unsupported(expr))
        for arg in expr.args:
            self.check_classes(where, arg)

    @staticmethod
    def unsupported(expr) -> str:
        kind = type(expr)
        if kind is sp.Piecewise:
            return ("a sympy Piecewise is accepted in a statement written through Builder, which "
                    "keeps it as symderive.Piecewise")
        if isinstance(expr, (sp.core.relational.Relational, sp.Or, sp.Not, sp.Xor)):
            return (f"'{expr}': a Piecewise condition compares a value with a constant using <, "
                    "<=, > or >= (several joined by &)")
        if isinstance(expr, sp.Symbol):
            return (f"symbol '{expr.name}' is a {_describe(expr)}, not a plain sympy.Symbol; "
                    "create it with symbols(...) or Symbol(...)")
        for base in (sp.Idx, sp.IndexedBase, sp.Indexed, sp.Add, sp.Mul, sp.Pow, sp.Sum,
                     sp.Integer, sp.Rational, sp.Float):
            if isinstance(expr, base):
                return (f"'{kind.__name__}' is a subclass of sympy {base.__name__}; only the "
                        f"sympy class itself is accepted")
        if isinstance(expr, sp.Function) or isinstance(expr, sp.core.function.Application):
            return (f"function '{kind.__name__}' has no derivative rule; symderive knows "
                    f"{known_names()} and +, -, *, /, powers, Sum, Maximum")
        if isinstance(expr, ExprWithLimits):
            return f"'{kind.__name__}' is not supported; use Sum or Maximum"
        if isinstance(expr, sp.MatrixBase) or kind.__name__.endswith("Matrix"):
            return "a Matrix is not a statement; write one element, name[i, j] = ..."
        if isinstance(expr, (bool, sp.logic.boolalg.Boolean)):
            return f"{expr} is a truth value, not a number"
        if isinstance(expr, (str, bytes, list, tuple, dict, set)):
            return (f"the right side is a {kind.__name__}; write a SymPy expression such as "
                    "2*x[i, j]")
        return (f"'{kind.__name__}' is not supported; statements use +, -, *, /, powers, "
                f"{known_names()}, Sum, Maximum and KroneckerDelta")

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

    # -- outputs and adjoints --------------------------------------------------------------------
    def check_outputs(self):
        outputs = self.p.outputs
        if not outputs:
            self.fail("outputs", "declare the output with .loss(name) or .output(name, ...)")
        for position, name in enumerate(outputs):
            if name in outputs[:position]:
                self.fail("outputs", f"'{name}' is declared as an output twice; name it once")
            kind = self.kinds.get(name)
            if kind in ("a size", "a constant", "an index"):
                self.fail("outputs", f"'{name}' is {kind}, not a value a statement computes; "
                          "declare a statement's name as the output")
            if self.defined.get(name) == "input":
                self.fail("outputs", f"'{name}' is an input; an output must be computed by a "
                          f"statement (copy it, e.g. out[...] = {name}[...], if you need it)")
            if name not in self.defined:
                self.fail("outputs", f"output '{name}' is not defined by any statement")
        if self.p.loss and indices_of(self.p.lhs(outputs[0])):
            self.fail("loss", f"the loss '{outputs[0]}' must be a scalar (no indices); "
                      "sum or average it over its indices")
        floats = {x.name for x in self.p.inputs if not x.integer}
        if not floats:
            self.fail("inputs", "the program has no float input to differentiate; declare one "
                      "with .input(name[indices])")
        depends = self.dependencies()
        if self.p.loss and not depends[outputs[0]]:
            self.fail("loss", f"the loss '{outputs[0]}' does not depend on any float input "
                      f"({', '.join(sorted(floats))}), so it has no gradient; compute it from them")
        if not any(depends[name] for name in outputs):
            self.fail("outputs", "no output depends on a float input "
                      f"({', '.join(sorted(floats))}), so there is no gradient; compute an output "
                      "from them")

    def dependencies(self) -> dict[str, set]:
        """The float inputs each name depends on (through the values it reads, not labels)."""
        depends = {x.name: set() if x.integer else {x.name} for x in self.p.inputs}
        for s in self.p.body:
            reads = {name_of(a) for a in s.rhs.atoms(sp.Indexed)}
            reads |= {a.name for a in s.rhs.atoms(sp.Symbol)}
            found = set().union(*(depends.get(name, set()) for name in reads))
            depends[s.name] = depends.get(s.name, set()) | found
        return depends

    def check_adjoint_names(self):
        """The emitted code names each float array's adjoint (and, for a program the double
        backward is derived from, its first-order gradient and that gradient's adjoint) after
        it: such a name must be free, neither another program name nor one in ``RESERVED``."""
        for name, kind in list(self.kinds.items()):
            if kind != "an array" or self.p.integer(name):
                continue  # a label has no adjoint
            roles = (f"the adjoint of '{name}' in the backward",
                     f"the gradient of '{name}' in the double backward",
                     f"the adjoint of the gradient of '{name}' in the double backward")
            for derived, role in zip(derived_names(name, self.double), roles):
                if derived in self.kinds:
                    self.fail(f"name '{derived}'", f"{derived} is {self.kinds[derived]} whose "
                              f"name clashes with {role}; rename it")
                if derived in RESERVED:
                    self.fail(self.where_array(name), f"{role} would be named '{derived}', which "
                              f"the emitted module already uses; rename the array '{name}'")

    def where_array(self, name: str) -> str:
        found = self.p.input(name)
        if found is not None:
            return self.where_input(found)
        return self.where(next(s for s in self.p.body if s.name == name))

    def check_adjoints(self):
        adjoints = self.p.adjoints
        if adjoints in ("all", "inputs"):
            return
        if isinstance(adjoints, str) or not isinstance(adjoints, tuple):
            self.fail("adjoints", f"adjoints={adjoints!r} is not 'all', 'inputs' or a tuple of "
                      "names")
        for name in adjoints:
            if not isinstance(name, str):
                self.fail("adjoints", f"adjoints= takes names as strings, e.g. ('h',), not "
                          f"{_describe(name)}")
            if name not in self.defined:
                self.fail("adjoints", f"'{name}' is not an input or a statement of this program")
            if self.p.integer(name):
                self.fail("adjoints", f"'{name}' is an integer label; it has no adjoint")

    def check_divisors(self):
        """Refuse example sizes (and constants) under which a statement divides by zero, such as
        Bessel's 1/(n - 1) at n = 1: check would have no finite value to compare, and the
        fix is another example size, not other example values."""
        values = {**self.sizes, **dict(self.p.constants)}
        shown = ", ".join(f"{s}={v}" for s, v in values.items())
        for s in self.p.body:
            for power in s.rhs.atoms(sp.Pow):
                base, exponent = power.args
                if exponent.is_negative and base.free_symbols and \
                        base.free_symbols <= set(values) and base.xreplace(values) == 0:
                    self.fail(self.where(s), f"it divides by {base}, which is 0 at the example "
                              f"values ({shown}); choose example sizes where it is not, e.g. "
                              "a larger one (sizes stay symbolic in the emitted code)")

    # -- memory ----------------------------------------------------------------------------------
    def check_memory(self):
        """Refuse example sizes whose arrays, with the largest intermediate a statement implies,
        exceed the budget."""
        def count(sizes) -> int:
            total = 1
            for size in sizes:
                total *= int(sp.sympify(size).xreplace(self.sizes))
            return total

        def widest(expr) -> int:
            """The most elements a naive evaluation of ``expr`` spans: free and bound indices."""
            here = [k for k in free_indices(expr.function if isinstance(expr, ExprWithLimits)
                                            else expr)]
            best = count(idx_size(k) for k in here)
            return max([best] + [widest(arg) for arg in expr.args if isinstance(arg, sp.Expr)
                                 and not isinstance(arg, (sp.Idx, sp.Indexed))])

        total = 0
        shown = ", ".join(f"{s}={v}" for s, v in self.sizes.items())
        for x in self.p.inputs:
            total += count(self.p.shape(x.name))
            if total > MEMORY_BUDGET:
                self.fail(self.where_input(x), self.too_big(total, shown))
        for s in self.p.body:
            total += count(self.p.shape(s.name)) if not s.accumulate else 0
            largest = widest(s.rhs)
            if total + largest > MEMORY_BUDGET:
                self.fail(self.where(s), self.too_big(total + largest, shown))

    @staticmethod
    def too_big(elements: int, shown: str) -> str:
        return (f"at the example sizes ({shown}) it needs about {elements:,} array elements, more "
                f"than symderive allocates ({MEMORY_BUDGET:,}); choose smaller example sizes in "
                "sizes={...} (sizes stay symbolic in the emitted code)")




def validated(program: Program) -> Program:
    """``program`` unchanged, once ``Checker`` finds it well formed (else a ``ProgramError``)."""
    Checker(program).run()
    return program
