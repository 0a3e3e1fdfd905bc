"""Validation of a program's declarations, mixed into ``validate.Checker``: names are plain
identifiers that shadow nothing the emitted code uses, sizes and constants plain finite numbers,
LaTeX spellings math only, and expressions only the exact SymPy classes the later stages know
(a subclass can carry printing hooks that write arbitrary text into a generated module)."""
from __future__ import annotations

import keyword
import math
import unicodedata

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core import numbers

from .ir import (
    idx_size,
)
from .latex_spelling import spelling_problem
from .names import RESERVED, function_class_name
from .ops import (
    CONDITION_NODES,
    OPS,
    ArgMax,
    Maximum,
    known_names,
)

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


class DeclarationChecks:
    """Names, sizes, constants, spellings and the classes an expression may hold."""

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
