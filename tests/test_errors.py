"""The error catalogue: every kind of bad derivation or bad argument, run through the command line in
process, exits 2 with exactly one line on stderr that names the statement (or argument) and says
what to change; nothing reaches stdout and nothing is written. One row per case, so a new mistake
a user finds becomes one more row."""
import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from symderive.cli import main

HEAD = '''import sympy as sp
from sympy import *
from symderive import Builder, Maximum, normal
n, d = symbols("n d", integer=True, positive=True)
i, j, k = Idx("i", n), Idx("j", d), Idx("k", n)
x, y, z, w, Y = symbols("x y z w Y", cls=IndexedBase)
loss = Symbol("loss")
'''


def layer(stmts="b[y[i, j]] = 2*x[i, j]", out="b.output(y)", sizes="{n: 3, d: 2}", options="",
          pre="", post="", name="case") -> str:
    """A small derivation whose one part under test is replaced."""
    return (f"{HEAD}{pre}\nb = Builder(\"{name}\", sizes={sizes}{options})\nb.input(x[i, j])\n"
            f"{stmts}\n{out}\n{post}\nprogram = b.build()\n")


def constant(value: str, pre: str = "") -> str:
    return layer(stmts="b[y[i, j]] = c*x[i, j]", options=f", constants={{c: {value}}}",
                 pre=f"c = Symbol('c')\n{pre}")


def statement(rhs: str, lhs: str = "y[i, j]", **options) -> str:
    return layer(stmts=f"b[{lhs}] = {rhs}", **options)


@dataclass
class Case:
    id: str
    source: str  # the derivation file's text ("" for argument-only cases)
    words: str  # what the one stderr line must contain; {line}: the line marked "# here"
    command: str = "emit"
    args: tuple = ()
    file: str = "case.py"


EVIL_FLOAT = '''class Evil(float):
    def __repr__(self):
        return "__import__('os').system('touch PWNED')"
'''
EVIL_SYMBOL = '''class Evil(Symbol):
    def _numpycode(self, printer):
        return "__import__('os').system('touch PWNED')"
    _torchcode = _pythoncode = _numpycode
    def _sympystr(self, printer):
        return "__import__('os').system('touch PWNED')"
'''
RESERVED_NAMES = ["dict", "tuple", "zip", "range", "len", "float", "int", "print", "super",
                  "object", "type", "device", "dtype", "np", "torch", "math", "F", "ctx",
                  "values", "grads", "forward", "SAVED", "once_differentiable", "max",
                  "leading_sums", "generate_vmap_rule", "result", "check_constants"]

CASES = [
    # design.md section 7
    Case("undefined-name", statement("x[i, j]*z[i, j]"), "'z' is not defined"),
    Case("free-index-mismatch", statement("x[i, j]", lhs="y[j]", out="b.output(y)"),
         "index 'i' is free on the right but not on the left"),
    Case("index-out-of-range", statement("x[j, i]"), "axis 0 of 'x' has size n"),
    Case("defined-twice", layer(stmts="b[y[i, j]] = x[i, j]\nb[y[i, j]] = 2*x[i, j]"),
         "'y' is defined twice"),
    Case("statement-named-like-input", statement("2*x[i, j]", lhs="x[i, j]", out="b.output(x)"),
         "'x' is an input; give the statement a new name"),
    Case("function-without-rule", statement("gamma(x[i, j])"),
         "function 'gamma' has no derivative rule"),
    Case("non-scalar-loss", layer(out="b.loss(y)"), "the loss 'y' must be a scalar"),
    Case("differentiating-a-label", layer(stmts="b[y[i, j]] = x[i, j]*Y[i]",
                                          pre="", post="", out="b.labels(Y[i], d)\nb.output(y)"),
         "'Y' is an integer label"),
    Case("inconsistent-sizes", layer(stmts="b.labels(Y[i], n)\nb[loss] = Sum(x[i, Y[i]], i)",
                                     out="b.loss(loss)"), "index 'Y[i]' ranges over n, but axis 1"),
    Case("missing-example-size", layer(sizes="{n: 3}"), "size d of index 'j' has no example size"),
    # Max, Min and Maximum misuse: the statement quoted without SymPy's internal dummies
    Case("elementwise-max", statement("Max(x[i, j], 2*x[i, j], 0)"),
         "'y[i, j] = Max(0, x[i, j], 2*x[i, j])' (case.py:"),
    Case("elementwise-min", statement("Min(x[i, j], 2*x[i, j], 1)"), "Min(...) of 3 values"),
    Case("piecewise-without-otherwise", statement("Piecewise((x[i, j], x[i, j] > 0))"),
         "the last branch of a Piecewise must be (value, True)"),
    Case("piecewise-two-values", statement("Piecewise((x[i, j], x[i, j] > 2*x[i, j]), (0, True))"),
         "must compare a value with a constant"),
    Case("piecewise-equality", statement("Piecewise((x[i, j], Eq(x[i, j], 0)), (0, True))"),
         "compares a value with a constant using <, <=, > or >="),
    Case("heaviside-symbolic-at-zero", statement("Heaviside(x[i, j], x[i, j])"),
         "the value at 0 of"),
    Case("maximum-nested", statement("Maximum(Maximum(x[i, j], j), i)", lhs="loss",
                                     out="b.loss(loss)"), "a Maximum over two indices"),
    Case("maximum-part-of-range", statement("Maximum(x[i, j], (j, 0, 1))", lhs="y[i]"),
         "Maximum over the whole range of 'j'"),
    Case("maximum-over-lhs-index", statement("Maximum(x[i, j], j)"), "'j' is maximised over"),
    Case("maximum-without-index", statement("Maximum(x[i, j])  # here"),
         "case.py line {line}: ValueError"),
    Case("partial-sum", statement("Sum(x[i, j], (i, 0, 1))", lhs="y[j]"),
         "sum over the whole range of 'i'"),
    Case("array-exponent", statement("x[i, j]**x[i, j]"), "the exponent of"),
    # numbers that are not finite reals
    Case("division-by-zero", statement("x[i, j]/0"), "division by zero"),
    Case("zero-size-difference", statement("x[i, j] + 1/(n - n)"), "zoo (complex infinity"),
    Case("nan", statement("x[i, j]*nan"), "nan (not a number) cannot appear"),
    Case("float-nan", statement("x[i, j] + float('nan')"), "nan (not a number)"),
    Case("infinity", statement("x[i, j] + oo"), "oo (infinity) cannot appear"),
    Case("minus-infinity", statement("x[i, j] - oo"), "-oo (minus infinity)"),
    Case("float-inf", statement("x[i, j]*float('inf')"), "oo (infinity)"),
    Case("imaginary", statement("I*x[i, j]"), "I (the imaginary unit"),
    # right sides and left sides that are not statements
    Case("matrix-rhs", statement("Matrix([[1, 2]])"), "a Matrix is not a statement"),
    Case("string-rhs", statement("'x[i, j]*2'"), "the right side is a builtins.str"),
    Case("list-rhs", statement("[x[i, j]]"), "the right side is a builtins.list"),
    Case("tuple-rhs", statement("(x[i, j], 1)"), "the right side is a builtins.tuple"),
    Case("bool-rhs", statement("True"), "True is a truth value"),
    Case("lhs-expression", statement("x[i, j]", lhs="2*y[i, j]"),
         "the lhs must be name[indices]"),
    Case("lhs-without-indices", statement("x[i, j]", lhs="y"), "write the lhs with its indices"),
    Case("lhs-string", statement("x[i, j]", lhs="'y'"), "the lhs must be name[indices]"),
    # example sizes
    Case("size-bool", layer(sizes="{n: True, d: 2}"), "size n: example size True is a bool"),
    Case("size-numpy-int", layer(sizes="{n: __import__('numpy').int64(3), d: 2}"),
         "write int(np.int64(3))"),
    Case("size-float", layer(sizes="{n: 3.0, d: 2}"), "size n: example size 3.0 is a float"),
    Case("size-zero", layer(sizes="{n: 0, d: 2}"), "positive integer, not 0"),
    Case("size-negative", layer(sizes="{n: -3, d: 2}"), "positive integer, not -3"),
    Case("size-string-key", layer(sizes="{'n': 3, n: 3, d: 2}"), "a size must be a SymPy Symbol"),
    Case("sizes-too-big", layer(sizes="{n: 100000, d: 100000}"),
         "input x[i, j] (case.py:10): at the example sizes (n=100000, d=100000)"),
    Case("intermediate-too-big", layer(sizes="{n: 3000, d: 3000}",
                                       stmts="b[y[i, j]] = Sum(x[k, j]*x[i, j]*x[k, j], k)"),
         "choose smaller example sizes"),
    # constants
    Case("constant-bool", constant("True"), "constant c: True is a bool"),
    Case("constant-numpy", constant("__import__('numpy').float64(0.5)"), "numpy.float64"),
    Case("constant-string", constant("'1e-5'"), "its value is a builtins.str"),
    Case("constant-complex", constant("1j"), "its value is a builtins.complex"),
    Case("constant-nan", constant("float('nan')"), "constant c: nan is not a finite number"),
    Case("constant-inf", constant("float('inf')"), "constant c: inf is not a finite number"),
    Case("constant-float-subclass", constant("Evil(1e-5)", pre=EVIL_FLOAT),
         "its value is a derivation_case.Evil"),
    Case("constant-keyword", layer(options=", constants={Symbol('lambda'): 1.0}"), "keyword"),
    Case("name-with-underscore", statement("x[i, j]", lhs="IndexedBase('_y')[i, j]",
                                           out="b.output(IndexedBase('_y'))"),
         "not start with '_'"),
    # classes: only the exact SymPy classes, never a subclass with printing hooks
    Case("symbol-subclass", layer(stmts="b[y[i, j]] = c*x[i, j]",
                                  options=", constants={Symbol('c'): 1.0}",
                                  pre=EVIL_SYMBOL + "c = Evil('c')\n"),
         "symbol 'c' is a derivation_case.Evil, not a plain sympy.Symbol"),
    Case("symbol-subclass-constant", constant("1.0", pre=EVIL_SYMBOL + "c = Evil('c')\n"),
         "a constant must be a SymPy Symbol"),
    Case("dummy", statement("Dummy('q')*x[i, j]"), "is a sympy.core.symbol.Dummy"),
    # names that print alike or normalise to another name
    Case("symbols-print-alike", statement("x[i, j]/Symbol('n')"),
         "two different Symbol objects print as 'n'"),
    Case("array-read-as-symbol", statement("x[i, j]*Symbol('x')"), "read it as x[i, j]"),
    Case("array-read-as-real-symbol", statement("x[i, j]*Symbol('x', real=True)"),
         "'x' has indices; read it as x[i, j]"),
    Case("index-two-ranges", statement("x[i, j]*Idx('i', d)"),
         "two different Idx objects print as 'i'"),
    Case("nfkc-beside-ascii", statement("x[i, j]*IndexedBase('\uff58')[i, j]"), "NFKC"),
    Case("nfkc-to-reserved", statement("x[i, j]", lhs="IndexedBase('\uff4e\uff50')[i, j]"),
         "it reads 'np'"),
    Case("function-class-name", layer(options=", constants={Symbol('CaseFunction'): 1.0}"),
         "'CaseFunction' is reserved"),
    *[Case(f"reserved-{name}", statement("2*x[i, j]", lhs=f"IndexedBase('{name}')[i, j]",
                                         out=f"b.output(IndexedBase('{name}'))"),
           f"'{name}' is reserved by the emitted code") for name in RESERVED_NAMES],
    Case("reserved-size", layer(sizes="{n: 3, d: 2, Symbol('len', integer=True): 2}"),
         "size len: 'len' is reserved"),
    Case("constant-named-like-adjoint", layer(stmts="b[y[i, j]] = dx*x[i, j]",
                                              options=", constants={dx: 1.0}",
                                              pre="dx = Symbol('dx')\n"),
         "dx is a constant whose name clashes with the adjoint of 'x'"),
    Case("size-named-like-adjoint", layer(sizes="{n: 3, d: 2, Symbol('dy', integer=True): 2}"),
         "dy is a size whose name clashes with the adjoint of 'y'"),
    Case("array-named-like-adjoint", statement("2*x[i, j]", lhs="IndexedBase('dx')[i, j]",
                                               out="b.output(IndexedBase('dx'))"),
         "dx is an array whose name clashes with the adjoint of 'x'"),
    # a derived name the emitted code would make from an array (d<name>, grad_<name>,
    # dgrad_<name>) must be free too: 'ict' and 'evice' once ran into dict and device (exit 3)
    *[Case(f"adjoint-named-{adjoint}", statement("2*x[i, j]", lhs=f"IndexedBase('{name}')[i, j]",
                                                 out=f"b.output(IndexedBase('{name}'))"),
           f"statement '{name}[i, j] = 2*x[i, j]' (case.py:11): the adjoint of '{name}' in the "
           f"backward would be named '{adjoint}', which the emitted module already uses; rename "
           f"the array '{name}'")
      for name, adjoint in (("ict", "dict"), ("ouble_backward", "double_backward"))],
    Case("input-adjoint-named-device",
         layer(stmts="b.input(IndexedBase('evice')[i, j])\n"
                     "b[y[i, j]] = x[i, j]*IndexedBase('evice')[i, j]"),
         "input evice[i, j] (case.py:11): the adjoint of 'evice' in the backward would be named "
         "'device', which the emitted module already uses; rename the array 'evice'"),
    Case("array-named-like-gradient", statement("2*x[i, j]", lhs="IndexedBase('grad_x')[i, j]",
                                                out="b.output(IndexedBase('grad_x'))"),
         "name 'grad_x': grad_x is an array whose name clashes with the gradient of 'x' in the "
         "double backward; rename it"),
    Case("constant-named-like-gradient-adjoint",
         layer(stmts="b[y[i, j]] = dgrad_y*x[i, j]", options=", constants={dgrad_y: 1.0}",
               pre="dgrad_y = Symbol('dgrad_y')\n"),
         "dgrad_y is a constant whose name clashes with the adjoint of the gradient of 'y'"),
    Case("program-named-forward", layer(name="forward"), "forward: program: 'forward' is reserved",
         file="forward.py"),
    Case("constant-named-max", layer(options=", constants={Symbol('max'): 1.0}"),
         "constant max: 'max' is reserved by the emitted code"),
    Case("constant-named-valueerror", layer(options=", constants={Symbol('ValueError'): 1.0}"),
         "constant ValueError: 'ValueError' is reserved by the emitted code"),
    # outputs and adjoints
    Case("output-is-input", layer(out="b.output(x)"), "outputs: 'x' is an input"),
    Case("output-is-size", layer(out="b.output(n)"), "outputs: 'n' is a size"),
    Case("output-declared-twice", layer(out="b.output(y, y)"),
         "'y' is declared as an output twice"),
    Case("outputs-declared-twice", layer(out="b.output(y)\nb.loss(y)"),
         "outputs: declared twice (case.py:"),
    Case("undefined-output", layer(out="b.output(z)"), "output 'z' is not defined"),
    Case("loss-without-float-input", layer(stmts="b[loss] = 2*n", out="b.loss(loss)"),
         "the loss 'loss' does not depend on any float input"),
    Case("no-float-input", HEAD + "b = Builder('case', sizes={n: 3})\nb.labels(Y[i], n)\n"
         "b[y[i]] = 2*n\nb.output(y)\nprogram = b.build()\n", "the program has no float input"),
    Case("adjoints-label", layer(options=", adjoints=('Y',)", post="b.labels(Y[i], d)"),
         "adjoints: 'Y' is an integer label"),
    Case("adjoints-unknown", layer(options=", adjoints=('q',)"),
         "adjoints: 'q' is not an input or a statement"),
    Case("adjoints-not-names", layer(options=", adjoints=3"), "adjoints=3 is not 'all'"),
    Case("adjoints-word", layer(options=", adjoints='everything'"), "'everything' is not 'all'"),
    Case("labels-string-classes", layer(post="b.labels(Y[i], 'd')"),
         "the number of classes must be a size symbol or an int"),
    # the derivation file itself
    Case("sys-exit", layer(post="import sys\nsys.exit(0)  # here"),
         "case.py line {line}: the file calls sys.exit(0)"),
    Case("raise-system-exit", layer(post="raise SystemExit(3)  # here"),
         "case.py line {line}: the file calls sys.exit(3)"),
    Case("keyboard-interrupt", layer(post="raise KeyboardInterrupt  # here"),
         "case.py line {line}: KeyboardInterrupt"),
    Case("base-exception", layer(post="raise BaseException('boom')  # here"),
         "case.py line {line}: BaseException: boom"),
    Case("exception-in-file", layer(post="raise ValueError('first\\nsecond')  # here"),
         "case.py line {line}: ValueError: first second"),
    Case("name-error", statement("x[i, j]*q[i, j]  # here"), "case.py line {line}: NameError"),
    Case("syntax-error", HEAD + "b = Builder('case', sizes={n: 3})\nb[y[i] = 1  # here\n",
         "case.py line {line}: SyntaxError"),
    Case("sum-over-a-float", statement("Sum(x[i, j], 1.0)  # here", lhs="y[i]"),
         "case.py line {line}: Sum(..., 1.0): a Sum runs over an index, not a number or a size; "
         "write Sum(..., i) over an Idx"),
    Case("sum-over-a-size", statement("Sum(x[i, j], d)  # here", lhs="y[i]"),
         "case.py line {line}: a Sum runs over an index"),
    Case("math-sqrt", statement("math.sqrt(x[i, j])  # here", pre="import math"),
         "case.py line {line}: math.sqrt cannot take a SymPy expression; write sympy.sqrt(...)"),
    Case("float-of-an-expression", statement("float(x[i, j])  # here"),
         "case.py line {line}: a SymPy expression was turned into a float"),
    Case("no-program", layer().replace("program = ", "built = "), "defines no 'program'"),
    Case("program-is-builder", layer().replace("program = b.build()", "program = b"),
         "'program' is a Builder, not a Program (call .build() on it)"),
    Case("program-is-int", layer().replace("program = b.build()", "program = 3"),
         "'program' is a int, not a Program"),
    Case("file-name-not-identifier", layer(name="my-layer"), "rename it to my_layer.py",
         file="my-layer.py"),
    Case("file-name-keyword", layer(name="lambda"), "must be a Python identifier",
         file="lambda.py"),
    Case("program-name-not-file-name", layer(name="other"),
         "builds program 'other'; name it 'case'"),
    # statements with no array lowering: the program, the statement and what to change
    Case("index-as-a-value", statement("Heaviside(i - k)*x[i, j]  # here", lhs="y[i, j, k]"),
         "case: statement 'y[i, j, k] = Heaviside(i - k)*x[i, j]' (case.py:{line}): "
         "'Heaviside(i - k)': a step of the indices is a mask only with its value at 0 given "
         "as 0 or 1"),
    Case("check-index-as-a-value", statement("Heaviside(i - k)*x[i, j]", lhs="y[i, j, k]"),
         "or in a mask Heaviside(i - j, 1) (1 where j <= i; Heaviside(i - j, 0) for j < i); "
         "other values computed from indices are an input to declare and read",
         command="check"),
    # an unflattening read lowers (its adjoint is a reshape), but here no input's axis is d long
    Case("unflattening-read-of-an-unknown-size", HEAD + "T = Symbol('T', integer=True, "
         "positive=True)\nt, e, c = Idx('t', T), Idx('e', d), Idx('c', T*d)\n"
         "b = Builder('case', sizes={n: 3, d: 2, T: 2})\nb.input(x[i, c])\n"
         "b[y[i, t, e]] = x[i, d*t + e]  # here\nb.output(y)\nprogram = b.build()\n",
         "case: size d is not the length of any input's axis, so the emitted code cannot read "
         "it; give an input an axis of size d"),
    Case("windowed-input", HEAD + "P, U = symbols('P U', integer=True, positive=True)\n"
         "p, u = Idx('p', P), Idx('u', U)\nb = Builder('case', sizes={n: 3, P: 4, U: 2})\n"
         "b.input(x[i, p + u])  # here\nb[y[i, p]] = Sum(x[i, p + u], u)\nb.output(y)\n"
         "program = b.build()\n",
         "input x[i, p + u] (case.py:{line}): input indices must be plain Idx, not 'p + u'; "
         "declare the input over its whole axis, x[i, l] with l = Idx('l', P + U - 1), and "
         "read it as x[i, p + u]"),
    Case("flattened-input", HEAD + "T = Symbol('T', integer=True, positive=True)\n"
         "t, e = Idx('t', T), Idx('e', d)\nb = Builder('case', sizes={n: 3, d: 2, T: 2})\n"
         "b.input(x[i, d*t + e])\nb[y[i, t, e]] = x[i, d*t + e]\nb.output(y)\n"
         "program = b.build()\n",
         "not 'd*t + e'; declare the input over the axes it stands for, x[i, t, e], and pass it "
         "reshaped"),
    # the same refusals through derive, check and regen
    Case("derive-undefined", statement("z[i, j]"), "'z' is not defined", command="derive"),
    Case("check-undefined", statement("z[i, j]"), "'z' is not defined", command="check"),
    Case("check-outside-the-domain", statement("log(x[i, j])"),
         "statement 'y[i, j] = log(x[i, j])' is not finite on the example values", command="check"),
    Case("check-overflow", statement("exp(exp(exp(3*x[i, j])))"),
         "overflows to infinity in float64 on the example values", command="check"),
    Case("regen-float-subclass", constant("Evil(1e-5)", pre=EVIL_FLOAT), "derivation_case.Evil",
         command="regen"),
    Case("regen-symbol-subclass", layer(stmts="b[y[i, j]] = c*x[i, j]",
                                        options=", constants={Symbol('c'): 1.0}",
                                        pre=EVIL_SYMBOL + "c = Evil('c')\n"),
         "not a plain sympy.Symbol", command="regen"),
    Case("derive-wrt-unknown", layer(), "no gradient with respect to 'q'", command="derive",
         args=("--wrt", "q")),
    # arguments
    Case("seed-negative", layer(), "argument --seed: -1 is out of range", command="check",
         args=("--seed", "-1")),
    Case("seed-too-large", layer(), "argument --seed: 9223372036854775808 is out of range",
         command="check", args=("--seed", str(2**63))),
    Case("seed-not-integer", layer(), "argument --seed: 'abc' is not an integer",
         command="check", args=("--seed", "abc")),
    Case("dtype-unknown", layer(), "argument --dtype", command="check", args=("--dtype", "half")),
    Case("output-is-a-file", layer(), "cannot write", command="emit-to", args=("afile",)),
    Case("output-under-a-file", layer(), "cannot write", command="emit-to",
         args=("afile/sub",)),
    Case("missing-file", "", "no such derivation file", command="derive", file="nope.py"),
    Case("not-a-python-file", layer(), "ending in .py", file="case.txt"),
]

# LaTeX spellings that would make pdflatex read a file, write one or run a program: each is refused
# by whichever command loads the derivation, naming the name and the offending piece.
LATEX_PAYLOADS = [  # (id, spelling, the piece the line names, command)
    ("input", r"\input{/etc/hostname}", r"latex(y=...): '\input' is not a math command", "latex"),
    ("openout", r"\immediate\openout5=pwned.py\immediate\write5{import os}",
     r"latex(y=...): '\immediate' is not a math command", "emit"),
    ("write18", r"\write18{touch PWNED}", r"latex(y=...): '\write' is not a math command",
     "regen"),
    ("hex-escape", r"^^5cinput{/etc/hostname}", "latex(y=...): '^^' is TeX's character-code escape",
     "latex"),
    ("csname", r"\csname input\endcsname{/etc/hostname}",
     r"latex(y=...): '\csname' is not a math command", "emit"),
    ("catcode", r"\catcode`\^=13", r"latex(y=...): '\catcode' is not a math command", "regen"),
    # the words are a format string: {{ and }} are one brace
    ("unbalanced", r"x}\input{/etc/hostname}{", "latex(y=...): a '}}' closes no '{{'", "latex"),
    ("comment", r"x%", "latex(y=...): '%' is not allowed in a LaTeX spelling", "latex"),
]
CASES += [Case(f"latex-{id}", layer(post=f"b.latex(y={spelling!r})"), words, command=command)
          for id, spelling, words, command in LATEX_PAYLOADS]
# a Program changed after Builder.build is validated when loaded, so its spellings are checked too
CASES.append(Case("latex-replaced-program", layer() + "from dataclasses import replace\nprogram = "
                  "replace(program, latex_names=(('y', r'\\input{/etc/hostname}'),))\n",
                  r"latex(y=...): '\input' is not a math command", command="latex"))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def argv(case: Case, path: Path, project: Path) -> list[str]:
    generated = project / "generated"
    if case.command == "emit":
        return ["emit", str(path), "--target", "numpy", "-o", str(generated)]
    if case.command == "emit-to":
        return ["emit", str(path), "--target", "numpy", "-o", str(project / case.args[0])]
    if case.command == "regen":
        return ["regen", "--root", str(project)]
    if case.command == "latex":  # into the project, compiled, so a write or read would show
        return ["latex", str(path), "-o", str(generated / "case.tex"), "--png"]
    return [case.command, str(path), *case.args]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_in_one_line(case, tmp_path, capsys):
    project = tmp_path / "project"
    (project / "derivations").mkdir(parents=True)
    (project / "generated").mkdir()
    (project / "generated" / "case_numpy.py").write_text("# written before\n")
    (project / "afile").write_text("not a folder\n")
    path = project / "derivations" / case.file
    if case.source:
        path.write_text(case.source)
    before = snapshot(project)
    code = main(argv(case, path, project))
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    marked = [n for n, line in enumerate(case.source.splitlines(), 1) if line.endswith("# here")]
    words = case.words.format(line=marked[0] if marked else None)
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert words in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""
    assert snapshot(project) == before
    assert not list(project.rglob("PWNED")) and not Path("PWNED").exists()


def test_catalogue_is_large_and_distinct():
    assert len(CASES) >= 45
    assert len({case.id for case in CASES}) == len(CASES)


def test_disk_full_is_reported_as_cannot_write(tmp_path, capsys, monkeypatch, root):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    generated = tmp_path / "generated"
    generated.mkdir()
    code = main(["emit", str(root / "derivations" / "cross_entropy.py"), "--target", "numpy",
                 "-o", str(generated)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert len(captured.err.splitlines()) == 1 and "cannot write" in captured.err
    assert "internal error" not in captured.err
    assert not list(generated.iterdir())


def test_derivation_output_never_reaches_stdout(tmp_path, capsys):
    path = tmp_path / "case.py"
    path.write_text(layer(post="print('hello from the file')\nimport os\nos.write(1, b'raw\\n')"))
    assert main(["derive", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["derivation"] == "case"
    assert "hello from the file" in captured.err


def test_derivation_output_goes_to_stderr_in_a_real_process(tmp_path):
    path = tmp_path / "case.py"
    path.write_text(layer(post="print('hello')\nimport os\nos.write(1, b'raw\\n')"))
    result = subprocess.run([sys.executable, "-m", "symderive", "derive", str(path), "--json"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["derivation"] == "case"
    assert "hello" in result.stderr and "raw" in result.stderr


def test_valid_constants_are_emitted_as_plain_floats(tmp_path, capsys):
    path = tmp_path / "case.py"
    path.write_text(constant("Rational(1, 4)"))
    assert main(["emit", str(path), "--target", "numpy", "-o", str(tmp_path / "out")]) == 0
    assert "c = 0.25\n" in (tmp_path / "out" / "case_numpy.py").read_text()
