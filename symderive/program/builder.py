"""The front end a derivation file uses: ``Builder`` collects declarations and ``name[indices] = rhs``
statements written with ``__setitem__`` (``layer[mu[j]] = Sum(x[i, j], i)/n``), remembers the file
line each came from so errors can point at it, refuses right away what is not a statement at all
(a string, a list, a Matrix, a truth value), and ``build()`` returns a ``Program`` checked by
``validate.Checker``, its constants made plain floats.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import sympy as sp

from .ir import Assign, Init, Input, Program, ProgramError, name_of, normal, uniform
from .latex_spelling import spelling_problem
from .recognise import Rewrite, recognise
from .validate import validated


def _caller(depth: int = 2) -> str:
    """``file.py:line`` of the derivation statement that called the builder."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return ""
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


def _expression(value, what: str) -> sp.Expr:
    """``value`` as a SymPy expression, refusing what sympify would parse or wrap: a string is
    parsed as code by sympify, so it is never passed to it."""
    if type(value) in (int, float):
        return sp.sympify(value)
    if isinstance(value, sp.Expr):
        return value
    if isinstance(value, (bool, sp.logic.boolalg.Boolean)):
        raise ProgramError(f"{what}: {value} is a truth value, not a number")
    if isinstance(value, sp.MatrixBase):
        raise ProgramError(f"{what}: a Matrix is not a statement; write one element, "
                           "name[i, j] = ...")
    kind = type(value)
    raise ProgramError(f"{what}: the right side is a {kind.__module__}.{kind.__qualname__}; write "
                       "a SymPy expression such as 2*x[i, j]")


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
                 adjoints: str | tuple = "inputs", double: bool = True):
        if not isinstance(name, str):
            raise ProgramError(f"Builder({name!r}): the program name must be a string, the "
                               "derivation file's name without .py")
        if not isinstance(sizes, dict) or not isinstance(constants, (dict, type(None))):
            raise ProgramError(f"{name}: sizes= and constants= must be dicts, e.g. sizes={{n: 4}}")
        if not isinstance(adjoints, str):
            try:
                adjoints = tuple(adjoints)
            except TypeError:
                raise ProgramError(f"{name}: adjoints={adjoints!r} is not 'all', 'inputs' or a "
                                   "tuple of names") from None
        if not isinstance(double, bool):
            raise ProgramError(f"{name}: double={double!r} must be True or False")
        self.name = name
        self.double = double  # False: the torch Function is once differentiable, and says why
        self.sizes = dict(sizes)
        self.constants = dict(constants or {})
        self.adjoints = adjoints
        self.inputs: list[Input] = []
        self.body: list[Assign] = []
        self.outputs: list[str] = []
        self.declared: list[str] = []
        self.is_loss = False
        self.references: list = []
        self.latex_names: dict[str, str] = {}
        self.rewrites: list[Rewrite] = []
        self._outputs_at = ""  # where the outputs were declared, to refuse a second declaration

    def input(self, lhs: sp.Expr, init: Init | None = None) -> None:
        """Declare a float input with the indices it is read with, e.g. ``W1[k, j]``."""
        if init is not None and not isinstance(init, Init):
            raise ProgramError(f"{self.name}: input '{lhs}': its example values must be "
                               "normal(...) or uniform(...)")
        # A sign declared through SymPy's assumptions (IndexedBase("x", positive=True)) is a fact
        # the rewrite rules rely on (and the emitted code checks), so the example values must
        # honour it.
        declared = next((sign for sign in ("positive", "nonnegative", "negative", "nonpositive")
                         if getattr(lhs, f"is_{sign}", None)), None)
        below = declared in ("negative", "nonpositive")  # values at or below zero
        if declared and init is None:
            init = uniform(-2.0, -0.5) if below else uniform(0.5, 2.0)
        elif declared and (init.kind != "uniform" or (
                init.high > 0 or declared == "negative" and init.high >= 0 if below else
                init.low < 0 or declared == "positive" and init.low <= 0)):
            bound = "high < 0" if below else "low > 0"
            raise ProgramError(f"{self.name}: input '{lhs}' is declared {declared}, but its "
                               f"example values are not; give it uniform(low, high) with {bound}")
        self._declare(Input(lhs, init or normal(), source=_caller()))

    def labels(self, lhs: sp.Expr, classes: sp.Expr) -> None:
        """Declare an integer input whose values lie in ``range(classes)``, e.g. ``Y[i]``."""
        if type(classes) is not int and not isinstance(classes, sp.Expr):
            raise ProgramError(f"{self.name}: labels '{lhs}': the number of classes must be a size "
                               f"symbol or an int, not {classes!r}")
        self._declare(Input(lhs, Init("labels"), sp.sympify(classes), source=_caller()))

    def _declare(self, x: Input) -> None:
        if not isinstance(x.lhs, (sp.Indexed, sp.Symbol)):
            raise ProgramError(f"{self.name}: input '{x.lhs}' must be written name[indices]")
        self.inputs.append(x)
        self.declared.append(x.name)

    def __setitem__(self, lhs: sp.Expr, rhs: sp.Expr) -> None:
        self._assign(lhs, rhs, _caller())

    def _assign(self, lhs, rhs, source: str) -> None:
        where = f"{self.name}: statement '{lhs} = {rhs}'" + (f" ({source})" if source else "")
        if isinstance(lhs, sp.IndexedBase):
            raise ProgramError(f"{where}: write the lhs with its indices, like {lhs}[i, j]")
        if not isinstance(lhs, (sp.Indexed, sp.Symbol)):
            raise ProgramError(f"{where}: the lhs must be name[indices] or a scalar symbol")
        # hand-written sigmoid/softplus shapes become the stable named functions (recorded)
        rhs, found = recognise(_expression(rhs, where), name_of(lhs))
        self.rewrites += found
        self.body.append(Assign(lhs, rhs, source=source))
        self.declared.append(name_of(lhs))

    def include(self, layer: Program, *, sizes: dict | None = None, prefix: str = "",
                **names: str) -> None:
        """Append a layer's statements, renaming its names by ``names`` (``Y="Yb"``). Its inputs
        must already be declared or defined here; its float inputs and its outputs become layer
        boundaries whose adjoints the compact backward materialises. ``sizes`` puts this
        program's sizes for the layer's (``sizes={T: 2*P}``: a layer over ``T`` positions used
        where there are ``2*P``), and ``prefix`` renames every name the layer defines that
        ``names`` does not, so one layer can be included twice (``prefix="bn1_"``).

        >>> mlp.include(load(HERE / "batchnorm.py"))  # doctest: +SKIP
        """
        if not isinstance(layer, Program):
            raise ProgramError(f"{self.name}: include takes a loaded Program, e.g. "
                               f"include(load(HERE / 'layer.py')), not {type(layer).__name__}")
        where = f"{self.name}: include {layer.name}"
        rename = self._size_renames(layer, sizes or {}, where)
        if prefix and not (isinstance(prefix, str) and prefix.isidentifier()):
            raise ProgramError(f"{where}: prefix={prefix!r} must start a Python identifier, "
                               "like 'bn1_'")
        names = dict(names)
        for statement in layer.body:  # the names the layer defines take the prefix
            defined = name_of(statement.lhs)
            names.setdefault(defined, prefix + defined)
        for old, new in names.items():
            rename[sp.IndexedBase(old)] = sp.IndexedBase(new)
            rename[sp.Symbol(old)] = sp.Symbol(new)
        for x in layer.inputs:
            name = names.get(x.name, x.name)
            if name not in self.declared:
                raise ProgramError(f"{where}: its input '{name}' is not declared or defined yet")
        for name, spelling in layer.latex_names:  # the layer's spellings, unless given here
            if names.get(name, name) == prefix + name and prefix:
                continue  # a prefixed copy: the layer's spelling would name two arrays alike
            self.latex_names.setdefault(names.get(name, name), spelling)
        for symbol, value in layer.constants:
            if self.constants.setdefault(symbol, value) != value:
                raise ProgramError(f"{where}: constant {symbol} is {self.constants[symbol]} here "
                                   f"but {value} in the layer")
        self.rewrites += layer.rewrites  # made when the layer was built
        for statement in layer.body:
            self._assign(statement.lhs.xreplace(rename), statement.rhs.xreplace(rename),
                         statement.source)
        boundaries = [names.get(x.name, x.name) for x in layer.inputs if not x.integer]
        boundaries += [names.get(x, x) for x in layer.outputs if not layer.loss]
        if self.adjoints != "all":
            chosen = [] if isinstance(self.adjoints, str) else list(self.adjoints)
            self.adjoints = tuple(dict.fromkeys(chosen + boundaries))

    def _size_renames(self, layer: Program, sizes: dict, where: str) -> dict:
        """``sizes`` checked: keys are the layer's size symbols, values expressions in this
        program's sizes (their example values must be positive integers, which build checks)."""
        if not isinstance(sizes, dict):
            raise ProgramError(f"{where}: sizes= must be a dict such as {{T: 2*P}}")
        own = {str(symbol): symbol for symbol, _ in layer.sizes}
        for symbol, value in sizes.items():
            if str(symbol) not in own:
                raise ProgramError(f"{where}: sizes= names {symbol}, which is not one of the "
                                   f"layer's sizes ({', '.join(sorted(own)) or 'none'})")
            if not isinstance(value, (int, sp.Expr)) or isinstance(value, bool) or \
                    isinstance(value, sp.Expr) and not value.free_symbols <= set(self.sizes):
                raise ProgramError(f"{where}: sizes= gives {symbol} = {value!r}; write it in this "
                                   f"program's sizes ({', '.join(map(str, self.sizes))})")
        rename = {own[str(symbol)]: sp.sympify(value) for symbol, value in sizes.items()}
        return {**rename, **self._index_renames(layer, rename)}

    def _index_renames(self, layer: Program, sizes: dict) -> dict:
        """The layer's indices whose range ``sizes`` changes, each replaced by this program's
        index of that range (``t`` over ``2*P`` becomes the host's ``p``), or by a fresh label
        where there is none: one label names one range in a program."""
        def indices(expressions):
            return {x for e in expressions for x in e.atoms(sp.Idx)}

        theirs = indices([s.lhs for s in layer.body] + [s.rhs for s in layer.body]
                         + [x.lhs for x in layer.inputs])
        ours = indices([s.lhs for s in self.body] + [s.rhs for s in self.body]
                       + [x.lhs for x in self.inputs])
        taken = {str(x.label) for x in theirs | ours}
        rename = {}
        for index in sorted(theirs, key=str):
            moved = index.xreplace(sizes)
            if moved == index:
                continue
            same = [x for x in ours if x.upper == moved.upper and str(x.label) not in
                    {str(y.label) for y in theirs}]
            if same:
                rename[index] = min(same, key=str)
                continue
            label = next(f"{index.label}{k}" for k in range(1, 10**6)
                         if f"{index.label}{k}" not in taken)
            taken.add(label)
            rename[index] = sp.Idx(label, (moved.lower, moved.upper))
        return rename

    def _set_outputs(self, names: list[str], loss: bool) -> None:
        if self._outputs_at:
            raise ProgramError(f"{self.name}: outputs: declared twice ({self._outputs_at} and "
                               f"{_caller(3)}); declare them in one .output(...) or .loss(...)")
        self._outputs_at = _caller(3) or "before"
        self.outputs = names
        self.is_loss = loss

    def loss(self, name: sp.Expr) -> None:
        """Declare the scalar loss; its adjoint is 1."""
        self._set_outputs([name_of(name)], True)

    def output(self, *names: sp.Expr) -> None:
        """Declare layer outputs; each gets an upstream adjoint ``d<name>``."""
        self._set_outputs([name_of(x) for x in names], False)

    def reference(self, label: str, forward) -> None:
        """An independent torch forward for ``check``: ``forward(*inputs)`` returns the outputs
        (e.g. ``F.batch_norm``); check differentiates it with autograd and compares."""
        self.references.append(("forward", label, forward))

    def latex(self, **names: str) -> None:
        """How the LaTeX derivation spells names: ``layer.latex(bnraw=r"\\hat{x}", bnmeani=r"\\mu")``;
        a name given none gets a default from its own spelling."""
        for name, spelling in names.items():
            if type(spelling) is not str or not spelling.strip() or "\n" in spelling:
                raise ProgramError(f"{self.name}: latex({name}=...): give one line of LaTeX as a "
                                   f"string, not {spelling!r}")
            problem = spelling_problem(spelling)  # build() checks again, for any Program
            if problem:
                raise ProgramError(f"{self.name}: latex({name}=...): {problem}")
        self.latex_names.update(names)

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
            double=self.double, declared=tuple(self.declared), references=tuple(self.references),
            latex_names=tuple(self.latex_names.items()), rewrites=tuple(self.rewrites))
        validated(program)
        unknown = [name for name, _ in program.latex_names if name not in program.names]
        if unknown:
            raise ProgramError(f"{self.name}: latex({unknown[0]}=...): '{unknown[0]}' is not an "
                               "input or a statement of this program")
        # checked plain numbers, printed into emitted code as floats
        return replace(program, constants=tuple((s, float(v)) for s, v in program.constants))
