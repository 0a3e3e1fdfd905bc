"""LaTeX spelling of index expressions, as a textbook writes them: a subclass of SymPy's
``LatexPrinter`` whose ``_print_<Class>`` methods print ``x[i, j]`` as ``x_{ij}``, a ``Sum`` as
``\\sum_{k}`` (its range only where the index's own range does not say it), a delta between indices
as ``\\delta_{ik}`` and any other delta as an indicator ``\\mathbf{1}[c = Y_{i}]``, ``Maximum`` as
``\\max_{c}``, an adjoint ``dx[i, j]`` as ``\\frac{\\partial \\mathcal{L}}{\\partial x_{ij}}``,
powers as powers and constant factors as ``\\frac{1}{n - 1}``. Array names come from a ``names`` map
(``{"bnraw": r"\\hat{x}"}``) or from the name itself (``W1 -> W_{1}``, ``gamma -> \\gamma``,
``bnraw -> \\mathrm{bnraw}``); functions are spelled by the op table's ``latex`` column.
"""
from __future__ import annotations

import re
import unicodedata

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.printing.latex import LatexPrinter, greek_letters_set

from ..program.ir import free_indices
from ..program.ops import OPS, ArgMax, Maximum, Piecewise, op_for

_ABBREVIATIONS = {"eps": r"\epsilon", "lamda": r"\lambda", "omicron": "o"}  # no \omicron
_ACCENTS = ("hat", "bar", "tilde", "dot", "vec")
_GREEK = set(greek_letters_set) | {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma",
                                   "Upsilon", "Phi", "Psi", "Omega"}


def default_name(name: str) -> str:
    r"""A LaTeX spelling of an array or scalar name without a user-given one; a non-ASCII
    character is spelled as ``math_character`` says, so every identifier compiles.

    >>> [default_name(x) for x in ("x", "W1", "gamma", "xhat", "eps", "bnvar_inv")]
    ['x', 'W_{1}', '\\gamma', '\\hat{x}', '\\epsilon', '\\mathrm{bnvar\\_inv}']
    >>> [default_name(x) for x in ("λ2", "aé")]
    ['\\lambda_{2}', '\\mathrm{a{\\acute{e}}}']
    """
    if name in _ABBREVIATIONS:
        return _ABBREVIATIONS[name]
    # [0-9], not \d: a digit of another script is spelled by math_character, not as a subscript
    match = re.fullmatch(r"([A-Za-z]+?|[^\x00-\x7f])(hat|bar|tilde|dot|vec)?([0-9]*)", name)
    if match:
        base, accent, digits = match.groups()
        if len(base) == 1 or base in _GREEK:
            text = math_character(base) if len(base) == 1 else "\\" + base
            text = f"\\{accent}{{{text}}}" if accent else text
            return text + (f"_{{{digits}}}" if digits else "")
    # a spelled character in braces, so the letters after it do not lengthen its command
    spelled = (r"\_" if char == "_" else char if char.isascii() else f"{{{math_character(char)}}}"
               for char in name)
    return r"\mathrm{" + "".join(spelled) + "}"


# Unicode's combining accents as LaTeX's math and text accents (e with U+0301 is \acute{e})
_MATH_ACCENTS = {"\u0300": r"\grave", "\u0301": r"\acute", "\u0302": r"\hat", "\u0303": r"\tilde",
                 "\u0304": r"\bar", "\u0306": r"\breve", "\u0307": r"\dot", "\u0308": r"\ddot",
                 "\u030a": r"\mathring", "\u030c": r"\check"}
_TEXT_ACCENTS = {"\u0300": "\\`", "\u0301": "\\'", "\u0302": "\\^", "\u0303": "\\~",
                 "\u0304": "\\=", "\u0306": "\\u", "\u0307": "\\.", "\u0308": '\\"',
                 "\u030a": "\\r", "\u030c": "\\v", "\u0327": "\\c"}
# Greek capitals that LaTeX writes with the Latin letter of the same shape (no \Alpha)
_LATIN_SHAPED = {"ALPHA": "A", "BETA": "B", "EPSILON": "E", "ZETA": "Z", "ETA": "H", "IOTA": "I",
                 "KAPPA": "K", "MU": "M", "NU": "N", "OMICRON": "O", "RHO": "P", "TAU": "T",
                 "CHI": "X"}
_UNICODE_GREEK = {"LAMDA": "lambda", "FINAL SIGMA": "varsigma"}  # Unicode's names that differ


def _greek(char: str) -> str | None:
    """The LaTeX of a Greek letter, found by its Unicode name; None for any other character."""
    match = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER ([A-Z ]+)", unicodedata.name(char, ""))
    if not match:
        return None
    case, letter = match.groups()
    if case == "CAPITAL" and letter in _LATIN_SHAPED:
        return _LATIN_SHAPED[letter]
    if case == "SMALL" and letter == "OMICRON":
        return "o"
    command = _UNICODE_GREEK.get(letter, letter.lower())
    command = command.capitalize() if case == "CAPITAL" else command
    return "\\" + command if command in _GREEK or command == "varsigma" else None


def _accented(char: str, accents: dict, spell) -> str | None:
    """A letter with one accent (``é``) as the accent command around the spelled letter."""
    parts = unicodedata.normalize("NFD", char)
    if len(parts) == 2 and parts[1] in accents:
        base = spell(parts[0])
        if base is not None:
            return f"{accents[parts[1]]}{{{base}}}"
    return None


def math_character(char: str) -> str:
    r"""One character of a name in math mode, as pdflatex with texlive-latex-base compiles it:
    ASCII as itself, a Greek letter as its command, an accented letter with a math accent, any
    other character by its code point.

    >>> [math_character(c) for c in ("x", "λ", "Λ", "Α", "é", "名")]
    ['x', '\\lambda', '\\Lambda', 'A', '\\acute{e}', '\\langle\\mathrm{U{+}540D}\\rangle']
    """
    if char.isascii():
        return char
    return _greek(char) or _accented(char, _MATH_ACCENTS, _plain_letter) or \
        rf"\langle\mathrm{{U{{+}}{ord(char):04X}}}\rangle"


def text_character(char: str) -> str:
    r"""One non-ASCII character in text mode: a Greek letter in math, an accented letter with a
    text accent, any other character by its code point.

    >>> [text_character(c) for c in ("λ", "é", "名")]
    ['$\\lambda$', "\\'{e}", '$\\langle$U+540D$\\rangle$']
    """
    greek = _greek(char)
    if greek is not None:
        return f"${greek}$"
    return _accented(char, _TEXT_ACCENTS, lambda c: c if c.isascii() and c.isalpha() else None) \
        or rf"$\langle$U+{ord(char):04X}$\rangle$"


def _plain_letter(char: str) -> str | None:
    """An ASCII letter or a Greek one, which a math accent can take."""
    return char if char.isascii() and char.isalpha() else _greek(char)


def _subscripted(name: str, sub: str) -> str:
    """``name`` with the subscript ``sub``; a name with a subscript of its own (``W_{1}``) takes the
    indices after it, in the same subscript (``W_{1,\\,kj}``)."""
    match = re.fullmatch(r"(.*)_\{([^{}]*)\}", name) or re.fullmatch(r"(.*)_(\w)", name)
    if match:
        return f"{match.group(1)}_{{{match.group(2)},\\,{sub}}}"
    return f"{name}_{{{sub}}}"


def _is_array(expr: sp.Expr) -> bool:
    return expr.has(sp.Indexed, sp.Idx, sp.KroneckerDelta, ExprWithLimits)


class IndexLatexPrinter(LatexPrinter):
    r"""Prints symderive's index expressions as LaTeX a reader can follow.

    ``names`` maps array and scalar names to LaTeX; ``adjoints`` maps an adjoint's name to the name
    it is the adjoint of (``{"dx": "x"}``), printed as ``\frac{\partial \mathcal{L}}{\partial x}``
    with ``loss`` the numerator; ``ranges`` gives each index name's declared ``(lower, upper)``, so
    a sum over exactly that range prints as ``\sum_{k}`` (an index not in it: its own range).

    >>> from sympy import IndexedBase, Idx, Sum, symbols
    >>> n, d = symbols("n d", integer=True, positive=True)
    >>> i, j = Idx("i", n), Idx("j", d)
    >>> IndexLatexPrinter({"mu": r"\mu"}).doprint(Sum(IndexedBase("x")[i, j], i) / n)
    '\\frac{1}{n} \\sum_{i} x_{ij}'
    """

    printmethod = "_symderive_latex"

    def __init__(self, names: dict[str, str] | None = None, adjoints: dict[str, str] | None = None,
                 loss: str = r"\mathcal{L}", ranges: dict | None = None):
        super().__init__()
        self.names = dict(names or {})
        self.adjoints = dict(adjoints or {})
        self.loss = loss
        # index name -> (lower, upper) a reader is told once; a Sum over another range says it
        self.ranges = dict(ranges or {})
        self.inline = False  # adjoints as a slash, for running text

    # -- names -----------------------------------------------------------------------------------
    def name(self, name: str) -> str:
        """The LaTeX spelling of an array or scalar name."""
        return self.names[name] if name in self.names else default_name(name)

    def _print_Symbol(self, expr, style="plain"):
        if expr.name in self.adjoints:
            return self._partial(self.name(self.adjoints[expr.name]))
        return self.name(expr.name)

    def _print_Idx(self, expr):
        return self._print(expr.label)

    def _print_IndexedBase(self, expr):
        return self.name(str(expr.label))

    def _print_Indexed(self, expr):
        name = str(expr.base.label)
        texts = [self._print(k) for k in expr.indices]
        # x_{ij} when every index is one letter; otherwise x_{i,\,Y_{i}} so the indices stay apart
        sub = "".join(texts) if all(len(t) == 1 for t in texts) else ",\\,".join(texts)
        if name in self.adjoints:
            return self._partial(_subscripted(self.name(self.adjoints[name]), sub))
        return _subscripted(self.name(name), sub)

    def _partial(self, wrt: str) -> str:
        if self.inline:  # in running text: a slash, not a fraction
            return rf"\partial {self.loss} / \partial {wrt}"
        return rf"\frac{{\partial {self.loss}}}{{\partial {wrt}}}"

    # -- reductions ------------------------------------------------------------------------------
    def _limits(self, expr: ExprWithLimits) -> str:
        """``k`` for a sum over an index's whole declared range; ``k=1`` ... otherwise."""
        indices, ranges = [], []
        for index, lower, upper in expr.limits:
            text = self._print(index)
            indices.append(text)
            told = self.ranges.get(str(index)) or (
                (index.lower, index.upper) if isinstance(index, sp.Idx) else None)
            if told is None or any(sp.expand(a - b) != 0 for a, b in zip((lower, upper), told)):
                ranges.append((text, lower, upper))
        if ranges and len(expr.limits) == 1:
            text, lower, upper = ranges[0]
            return f"{{{text}={self._print(lower)}}}^{{{self._print(upper)}}}"
        if ranges:  # several indices, some over part of their range: say each range
            return "{" + ",\\,".join(rf"{self._print(lo)} \le {t} \le {self._print(up)}"
                                     for t, lo, up in ranges) + "}"
        return "{" + (",".join(indices)) + "}"

    def _body(self, expr: sp.Expr) -> str:
        text = self._print(expr)
        return self._wrap(text) if isinstance(expr, sp.Add) else text

    def _print_Sum(self, expr):
        return rf"\sum_{self._limits(expr)} {self._body(expr.function)}"

    def _print_Maximum(self, expr):
        return rf"\max_{self._limits(expr)} {self._body(expr.function)}"

    def _print_ArgMax(self, expr):
        return rf"\operatorname{{argmax}}_{self._limits(expr)} {self._body(expr.function)}"

    def _print_KroneckerDelta(self, expr, exp=None):
        a, b = expr.args
        if isinstance(a, sp.Idx) and isinstance(b, sp.Idx):
            texts = [self._print(a), self._print(b)]
            sub = "".join(texts) if all(len(t) == 1 for t in texts) else ",\\,".join(texts)
            return rf"\delta_{{{sub}}}"
        if isinstance(b, sp.Idx) and not isinstance(a, sp.Idx):
            a, b = b, a  # the index first: 1[c = Y_i]
        return rf"\mathbf{{1}}[{self._print(a)} = {self._print(b)}]"

    # -- arithmetic ------------------------------------------------------------------------------
    @staticmethod
    def _wrap(text: str) -> str:
        """Parentheses, sized to their content when it is tall."""
        if any(tall in text for tall in (r"\frac", r"\sum", r"\max", r"\operatorname")):
            return rf"\left({text}\right)"
        return f"({text})"

    def ordered_terms(self, expr: sp.Add) -> list:
        r"""The terms of a sum in print order: positive ones first, and among each sign the terms
        with arrays before constants (``\sigma^2_{j} + \epsilon``, ``1 - h_{ij}^{2}``)."""
        return sorted(self._as_ordered_terms(expr), key=lambda term: (
            term.could_extract_minus_sign(), not _is_array(term)))

    def _print_Add(self, expr, order=None):
        text = ""
        for term in self.ordered_terms(expr):
            if term.could_extract_minus_sign():
                text += " - " if text else "-"
                term = -term
            elif text:
                text += " + "
            part = self._print(term)
            text += self._wrap(part) if isinstance(term, sp.Add) else part
        return text

    def _factor(self, expr: sp.Expr, last: bool) -> str:
        """One factor of a product: sums in parentheses, a reduction too unless it comes last
        (``\\sum_k a_k \\sum_k b_k`` would read as nested)."""
        text = self._print(expr)
        if isinstance(expr, sp.Add) or isinstance(expr, (sp.Sum, Maximum, ArgMax)) and not last:
            return self._wrap(text)
        return text

    def _product(self, factors: list, bare: bool = False) -> str:
        """Factors side by side; ``bare``: a lone factor needs no parentheses (in a fraction)."""
        if bare and len(factors) == 1:
            return self._print(factors[0])
        last = len(factors) - 1
        texts = [self._factor(f, position == last) for position, f in enumerate(factors)]
        result = ""
        for text in texts:
            if result:
                wide = any(r"\mathrm" in t or r"\frac" in t for t in (result, text))
                result += r"\, " if wide else " "
            result += text
        return result

    @staticmethod
    def _rank(factor: sp.Expr, adjoints) -> tuple:
        r"""Read order in a product: plain values (sums of them in parentheses last), then
        adjoints, then reductions: ``(1 - h_{ij}^{2}) \frac{\partial \mathcal{L}}{\partial h}``."""
        reads_adjoint = any(str(x.base.label) in adjoints for x in factor.atoms(sp.Indexed))
        reduction = factor.has(sp.Sum, Maximum)
        return (reduction, reads_adjoint, isinstance(factor, sp.Add))

    def _order(self, factor: sp.Expr) -> tuple:
        r"""Plain factors with fewer free indices first: ``\gamma_{j} r_{j} \hat{x}_{ij}``."""
        return self._rank(factor, self.adjoints) + (len(free_indices(factor)),)

    def _print_Mul(self, expr):
        coeff, _ = expr.as_coeff_Mul()
        if coeff.is_negative:
            return "-" + self._print_Mul_positive(-expr)
        return self._print_Mul_positive(expr)

    def _print_Mul_positive(self, expr):
        if not isinstance(expr, sp.Mul):
            return self._factor(expr, True)
        number = sp.S.One
        top, bottom, arrays, divisors = [], [], [], []
        for factor in expr.args:
            if factor.is_Number:
                number *= factor
                continue
            base, exponent = factor.as_base_exp()
            if not _is_array(factor):
                (bottom if exponent.is_negative else top).append(
                    base ** -exponent if exponent.is_negative else factor)
            elif exponent == -1:
                divisors.append(base)
            else:
                arrays.append(factor)
        arrays.sort(key=self._order)
        number = sp.Rational(number)
        head = ([sp.Integer(number.p)] if number.p != 1 else []) + top
        below = ([sp.Integer(number.q)] if number.q != 1 else []) + bottom + divisors
        if not below:
            return self._product(head + arrays)
        plain = not any(any(self._rank(f, self.adjoints)[:2]) for f in arrays)
        if plain:  # e_{ic}/(n s_i): one fraction
            top_text = self._product(head + arrays, bare=True) or "1"
            return rf"\frac{{{top_text}}}{{{self._product(below, bare=True)}}}"
        top_text = self._product(head, bare=True) or "1"
        fraction = rf"\frac{{{top_text}}}{{{self._product(below, bare=True)}}}"
        rest = self._product(arrays)
        operator = rest.startswith((r"\sum", r"\max", r"\operatorname", r"\left"))  # spaced
        return fraction + (" " if operator else r"\, ") + rest

    def _print_Pow(self, expr):
        base, exponent = expr.args
        if exponent == -1:
            return rf"\frac{{1}}{{{self._print(base)}}}"
        if exponent == sp.Rational(1, 2):
            return rf"\sqrt{{{self._print(base)}}}"
        text = self._print(base)
        if not isinstance(base, (sp.Symbol, sp.Indexed, sp.Idx)) or "^" in text or r"\frac" in text:
            text = rf"\left({text}\right)"  # sigma^2_j or an adjoint's fraction, too
        if isinstance(exponent, sp.Rational) and not exponent.is_Integer:
            power = f"{exponent.p}/{exponent.q}"
        else:
            power = self._print(exponent)
        return f"{text}^{{{power}}}"

    def _print_Rational(self, expr):
        if expr.q == 1:
            return str(expr.p)
        sign = "-" if expr.p < 0 else ""
        return rf"{sign}\frac{{{abs(expr.p)}}}{{{expr.q}}}"

    # -- functions -------------------------------------------------------------------------------
    # printmethod is our own, so SymPy's _latex hooks of the number symbols are not used
    def _print_Pi(self, expr):
        return r"\pi"

    def _print_Exp1(self, expr):
        return "e"

    def _print_Piecewise(self, expr):
        r"""``\begin{cases} x_{i} & \text{if } x_{i} > 0 \\ 0 & \text{otherwise} \end{cases}``"""
        rows = [f"{self._print(value)} & "
                + (r"\text{otherwise}" if condition is sp.true
                   else rf"\text{{if }} {self._print(condition)}")
                for value, condition in expr.args]
        return r"\begin{cases} " + r" \\ ".join(rows) + r" \end{cases}"

    def _print_op(self, expr, exp=None):
        op = op_for(expr)
        # a Heaviside's second argument is its value at 0, which the step's name does not show
        shown = expr.args[:1] if isinstance(expr, sp.Heaviside) else expr.args
        if "{0}" in op.latex:  # a template: |x| (not \operatorname{sign}, whose braces are LaTeX)
            text = op.latex.format(*(self._print(a) for a in shown))
        else:
            text = f"{op.latex}{self._wrap(', '.join(self._print(a) for a in shown))}"
        return rf"{self._wrap(text)}^{{{self._print(exp)}}}" if exp is not None else text


# The op table's functions print through the table's ``latex`` column.
for _function in OPS:
    if _function not in (sp.Pow, Piecewise):  # functions, Max and Min (not cases)
        setattr(IndexLatexPrinter, f"_print_{_function.__name__}", IndexLatexPrinter._print_op)
