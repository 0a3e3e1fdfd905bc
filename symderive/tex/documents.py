"""A derivation as a standalone LaTeX document a reader can follow: the forward statements, then for
each materialised gradient the chain rule with every other adjoint inlined, one aligned line per
rewrite step with the rule's name in a right-hand column, and the compact result boxed (for
``adjoints="all"``, every atomic adjoint statement instead), and the rules used with their side
conditions. Lines too wide for the page are broken between terms by an estimate of their printed
width, so nothing beyond Debian's texlive-latex-base and texlive-latex-recommended is needed.
"""
from __future__ import annotations

import re

import sympy as sp

from ..algebra.grad import adjoint_name, backward
from ..algebra.rules import step_conditions
from ..algebra.simplify import compact_gradients
from ..algebra.stabilize import forward_rewrites
from ..program.ir import Program, ProgramError, lhs_index_set
from ..program.latex_spelling import spelling_problem
from .printer import IndexLatexPrinter, text_character

TEXT_WIDTH = 48.0  # em of 10pt type across an A4 page with 2 cm margins (17 cm)


PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[a4paper,margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\allowdisplaybreaks
\pagestyle{empty}
\newcommand{\pluseq}{\mathrel{+}=}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5\baselineskip}
\setlength{\jot}{6pt}
"""


START = "chain rule"  # the label of a gradient's first line, which is not a rewrite step


# -- the document ----------------------------------------------------------------------------------
def printer_for(program: Program, names: dict | None = None,
                extra: tuple = ()) -> IndexLatexPrinter:
    r"""The printer of ``program``'s expressions: its LaTeX names (given ones first, then those the
    program declares, the loss as ``\mathcal{L}``), its adjoints as partial derivatives, and the
    range of every index it declares or ``extra`` expressions bind."""
    given = dict(getattr(program, "latex_names", None) or ())
    given.update(names or {})
    for name, spelling in given.items():  # pasted into the math: only whitelisted LaTeX
        problem = spelling_problem(spelling) if type(spelling) is str else \
            f"give the LaTeX as a string, not {type(spelling).__name__}"
        if problem:
            raise ProgramError(f"{program.name}: latex({name}=...): {problem}")
    if program.loss:
        given.setdefault(program.outputs[0], r"\mathcal{L}")
    adjoints = {adjoint_name(x): x for x in program.names if adjoint_name(x) not in program.names}
    return IndexLatexPrinter(given, adjoints, ranges=_ranges(program, extra))


def _ranges(program: Program, extra: tuple) -> dict:
    """Each index name's range: as the program declares it, else as an expression binds it."""
    ranges: dict = {}
    lhss = [x.lhs for x in program.inputs] + [s.lhs for s in program.body]
    for index in [k for lhs in lhss for k in lhs_index_set(lhs)]:  # in the order declared
        ranges.setdefault(str(index), (index.lower, index.upper))
    for expr in [s.rhs for s in program.body] + list(extra):
        for index in sorted(expr.atoms(sp.Idx), key=str):
            if index.lower is not None:
                ranges.setdefault(str(index), (index.lower, index.upper))
    return ranges


def program_latex(program: Program, names: dict | None = None,
                  printer: IndexLatexPrinter | None = None) -> str:
    """The forward statements, one aligned line each, as an ``align*`` block.

    >>> print(program_latex(load("derivations/batchnorm.py")))  # doctest: +SKIP
    \\begin{align*}
    \\mathrm{bnmeani}_{j} &= \\frac{1}{n} \\sum_{i} \\mathrm{hprebn}_{ij} \\\\
    ...
    """
    printer = printer or printer_for(program, names)
    rows = [(printer.doprint(s.lhs), "=", s.rhs, "") for s in program.body]
    return _align(rows, printer)


def gradient_latex(gradient, program: Program, names: dict | None = None,
                   printer: IndexLatexPrinter | None = None) -> str:
    """One compact gradient: the chain rule with the other adjoints inlined (the ``inline`` step's
    ``before``, else the first step's), a line per step with its rule, the result boxed."""
    printer = printer or printer_for(program, names, _expressions([gradient]))
    steps = gradient.steps
    start = steps[0].before if steps else gradient.expr
    rows = [(printer.doprint(gradient.lhs), "=", start, START)]
    rows += [("", "=", step.after, step.rule) for step in steps]
    return _align(rows, printer, boxed=True)


def backward_latex(program: Program, names: dict | None = None,
                   printer: IndexLatexPrinter | None = None) -> str:
    """Every adjoint statement of the atomic backward, in order; fan-out accumulates (``+=``)."""
    atomic = backward(program)
    printer = printer or printer_for(program, names, tuple(s.rhs for s in atomic.body))
    rows = [(printer.doprint(s.lhs), r"\pluseq" if s.accumulate else "=", s.rhs, "")
            for s in atomic.body]
    return _align(rows, printer)


def document(program: Program, names: dict | None = None, gradients=None) -> str:
    r"""The standalone ``.tex`` text of ``program``'s derivation. ``names`` maps array names to
    LaTeX (``{"bnraw": r"\hat{x}"}``); ``gradients`` are the compact gradients when already derived
    (``simplify.compact_gradients(program)``), derived here otherwise.

    >>> tex = document(load("derivations/batchnorm.py"), {"bnraw": r"\hat{x}"})  # doctest: +SKIP
    """
    atomic = program.adjoints == "all"
    if not atomic and gradients is None:

        gradients = compact_gradients(program)
    gradients = list(gradients or ())
    extra = tuple(s.rhs for s in backward(program).body) if atomic else _expressions(gradients)
    printer = printer_for(program, names, extra)
    parts = [PREAMBLE, r"\begin{document}",
             rf"\section*{{The backward pass of \texttt{{{_text(program.name)}}}}}",
             _notation(program, printer, extra),
             r"\subsection*{Forward}", program_latex(program, printer=printer),
             _forward_rewrites_latex(program, printer),
             r"\subsection*{Backward}"]
    if atomic:
        parts += ["Every adjoint, one statement per dependency of the forward, in reverse order; "
                  r"$\pluseq$ adds a further consumer's contribution to an adjoint.",
                  backward_latex(program, printer=printer)]
    else:
        parts.append(_backward_intro(program, printer))
        for gradient in gradients:
            base = printer.name(gradient.name)
            parts += [f"% gradient: {gradient.name}",
                      rf"\subsubsection*{{Gradient with respect to ${base}$}}",
                      gradient_latex(gradient, program, printer=printer)]
        parts.append(_rules_used(gradients))
    parts.append(r"\end{document}")
    return "\n".join(part for part in parts if part) + "\n"


def _forward_rewrites_latex(program: Program, printer: IndexLatexPrinter) -> str:
    """The rewrites the emitted forward makes, each with its rule and side condition: stable
    functions recognised in written-out forms, logs of exponentials folded, label reads."""
    found = forward_rewrites(program)
    if not found:
        return ""
    rows, previous = [], None
    for name, rule, before, after, _ in found:
        # a rewrite of what the previous one wrote continues its chain (``&= after``)
        lhs = "" if previous == (name, before) else printer.doprint(before)
        rows.append((lhs, "=", after, rule))
        previous = (name, after)
    conditions = dict((rule, condition) for _, rule, _, _, condition in found)
    items = [rf"\item[{_text(rule)}] {_text(condition)}" for rule, condition in conditions.items()]
    return "\n".join([r"\subsubsection*{Rewrites of the forward}",
                      "The emitted forward computes the same values in forms that stay finite "
                      "in floating point, or on fewer entries:", _align(rows, printer),
                      r"\begin{description}\small", *items, r"\end{description}"])


def _expressions(gradients) -> tuple:
    return tuple(e for g in gradients for s in g.steps for e in (s.before, s.after)) + \
        tuple(g.expr for g in gradients)


def _notation(program: Program, printer: IndexLatexPrinter, extra: tuple) -> str:
    """Which values are given and what the indices range over."""
    inputs = [x for x in program.inputs if not x.integer]
    labels = [x for x in program.inputs if x.integer]
    said = [("Inputs " if len(inputs) > 1 else "Input ") +
            ", ".join(f"${printer.doprint(x.lhs)}$" for x in inputs)] if inputs else []
    if labels:
        said.append("labels " + ", ".join(
            rf"${printer.doprint(x.lhs)} \in \{{0, \ldots, {printer.doprint(x.classes - 1)}\}}$"
            for x in labels))
    if program.constants:
        said.append("constant" + ("s " if len(program.constants) > 1 else " ") +
                    ", ".join(f"${printer.doprint(s)}$" for s, _ in program.constants))
    used = {str(k) for e in [s.rhs for s in program.body] + list(extra) for k in e.atoms(sp.Idx)}
    used |= {str(k) for x in program.inputs for k in x.lhs.atoms(sp.Idx)}
    shown = []
    for name, (lower, upper) in printer.ranges.items():
        if name in used:
            index = printer.doprint(sp.Symbol(name))
            shown.append(rf"$0 \le {index} < {printer.doprint(upper + 1)}$" if lower == 0 else
                         rf"${printer.doprint(lower)} \le {index} \le {printer.doprint(upper)}$")
    text = "; ".join(said) + "." if said else ""
    if shown:
        text += " Indices range over " + ", ".join(shown) + "."
    return text


def _backward_intro(program: Program, printer: IndexLatexPrinter) -> str:
    text = ("For each gradient the first line is the chain rule over the forward statements, every "
            "other adjoint inlined; each further line applies the rewrite rule named on the right, "
            "and the box holds the result.")
    if not program.loss:
        printer.inline = True
        given = ", ".join(f"${printer.doprint(sp.IndexedBase(adjoint_name(x))[program.axes(x)])}$"
                          if program.axes(x) else f"${printer.doprint(sp.Symbol(adjoint_name(x)))}$"
                          for x in program.outputs)
        printer.inline = False
        text += f" The upstream gradient {given} is given."
    return text


def _rules_used(gradients) -> str:
    """Each rule the steps apply, with the side condition under which it holds."""
    conditions = step_conditions()
    used = list(dict.fromkeys(step.rule for g in gradients for step in g.steps))
    if not used:
        return ""
    items = [rf"\item[{_text(name)}] {_text(conditions.get(name, ''))}" for name in used]
    return "\n".join([r"\subsection*{Rules and their side conditions}",
                      r"\begin{description}\small", *items, r"\end{description}"])


def _text(text: str) -> str:
    """Plain text made safe for LaTeX's text mode; a non-ASCII character (a Unicode program
    name) spelled so that pdflatex compiles it."""
    special = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "^": r"\^{}",
               "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "~": r"\~{}", "<": r"$<$",
               ">": r"$>$", "*": r"$*$"}
    return "".join(special.get(char, char) if char.isascii() else text_character(char)
                   for char in text)


# -- layout: aligned rows, long ones broken between terms ----------------------------------------
def _align(rows, printer: IndexLatexPrinter, boxed: bool = False) -> str:
    """``align*`` of ``(lhs, relation, rhs expr, rule)`` rows; the last rhs boxed when ``boxed``.
    A row wider than the page is broken before a ``+`` or ``-`` onto indented lines."""
    if not rows:
        return ""
    lhs_width = max(width(lhs) for lhs, *_ in rows)
    rule_width = max((width(rf"\text{{{rule}}}") for *_, rule in rows if rule), default=0.0)
    budget = TEXT_WIDTH - lhs_width - 1.5 - (rule_width + 1.5 if rule_width else 0.0) - 1.0
    lines = [r"\begin{align*}"]
    for position, (lhs, relation, rhs, rule) in enumerate(rows):
        last = boxed and position == len(rows) - 1
        parts = layout(rhs, printer, budget - (1.5 if last else 0.0))
        if last:
            parts = [rf"\boxed{{{parts[0]}}}"] if len(parts) == 1 else [
                r"\boxed{\begin{aligned}&" + r"\\ &\quad ".join(parts) + r"\end{aligned}}"]
        tail = rf" && \text{{{rule}}}" if rule else ""
        comment = "" if not rule or rule == START else f" % step: {rule}"
        for number, part in enumerate(parts):
            head = f"{lhs} &{relation} " if number == 0 else r"&\quad "
            end = "" if position == len(rows) - 1 and number == len(parts) - 1 else r" \\"
            lines.append(head + part + (tail if number == 0 else "") + end +
                         (comment if number == 0 else ""))
    lines.append(r"\end{align*}")
    return "\n".join(lines)


def layout(expr: sp.Expr, printer: IndexLatexPrinter, budget: float) -> list[str]:
    """``expr`` printed as lines no wider than ``budget`` em where it can be broken: between the
    terms of a sum, also inside a product's parenthesised sum (with fixed-size parentheses, since
    ``\\left`` and ``\\right`` cannot span lines). Continuation lines start with their sign."""
    text = printer.doprint(expr)
    if width(text) <= budget:
        return [text]
    if isinstance(expr, sp.Add):
        return _pack(printer.ordered_terms(expr), printer, budget)
    negative = expr.could_extract_minus_sign()
    body = -expr if negative else expr
    sums = [f for f in sp.Mul.make_args(body) if isinstance(f, sp.Add)]
    if not isinstance(body, sp.Mul):
        return [text]  # nothing to break between
    if not sums:
        return _break_product(body, negative, printer, budget)
    inner = max(sums, key=lambda f: width(printer.doprint(f)))
    rest = body / inner
    prefix = ("-" if negative else "") + ("" if rest == 1 else printer.doprint(rest))
    tall = r"\frac" in printer.doprint(inner) or r"\sum" in printer.doprint(inner)
    opening, closing = (r"\biggl(", r"\biggr)") if tall else (r"\bigl(", r"\bigr)")
    lines = _pack(printer.ordered_terms(inner), printer, budget - width(prefix) - 1.0)
    lines[0] = f"{prefix} {opening}{lines[0]}"
    lines[-1] = f"{lines[-1]} {closing}"
    return lines


def _break_product(body: sp.Mul, negative: bool, printer: IndexLatexPrinter,
                   budget: float) -> list[str]:
    """A product with no sum to open, broken between its factors: the plain factors first as
    one product, then each reduction, in parentheses unless it comes last (as the printer
    writes them); continuation lines start with ``\\cdot``."""
    factors = sp.Mul.make_args(body)
    reductions = [f for f in factors if isinstance(f, sp.Sum)]
    plain = sp.Mul(*[f for f in factors if not isinstance(f, sp.Sum)])
    pieces = ([] if plain == 1 else [printer.doprint(plain)]) + [
        printer.doprint(f) if position == len(reductions) - 1 else
        rf"\left({printer.doprint(f)}\right)" for position, f in enumerate(reductions)]
    if len(pieces) < 2 or len(pieces) == 2 and width(pieces[0]) < budget / 3:
        return [printer.doprint(-body if negative else body)]  # a short factor alone saves little
    lines = ["-" * negative + pieces[0]]
    for piece in pieces[1:]:
        if width(f"{lines[-1]}\\, {piece}") <= budget:
            lines[-1] += f"\\, {piece}"
        else:
            lines.append(rf"{{}} \cdot {piece}")
    return lines


def _pack(terms, printer: IndexLatexPrinter, budget: float) -> list[str]:
    lines = [""]
    for position, term in enumerate(terms):
        negative = term.could_extract_minus_sign()
        sign = "-" if negative else "+"
        parts = layout(-term if negative else term, printer, budget - 2.0)
        if position == 0:
            lines[-1] = ("-" if negative else "") + parts[0]
        elif width(f"{lines[-1]} {sign} {parts[0]}") <= budget:
            lines[-1] += f" {sign} {parts[0]}"
        else:
            lines.append(f"{{}} {sign} {parts[0]}")  # {} keeps the sign binary at a line's start
        lines += parts[1:]
    return lines


# -- how wide LaTeX math prints, estimated in em ---------------------------------------------------
_TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|[{}^_]|\s+|.")


_LIMITS = {r"\sum": 1.45, r"\max": 1.7, r"\min": 1.6, r"\prod": 1.3}


_SPACES = {r"\,": 0.17, r"\;": 0.28, r"\:": 0.22, r"\!": -0.17, r"\quad": 1.0, r"\qquad": 2.0,
           "\\ ": 0.33}


_WORDS = (r"\mathrm", r"\text", r"\operatorname", r"\mathit", r"\texttt")


_DELIMITERS = (r"\left", r"\right", r"\bigl", r"\bigr", r"\Bigl", r"\Bigr", r"\biggl", r"\biggr")


def width(tex: str) -> float:
    """Estimated printed width of display math ``tex`` in em (10pt Computer Modern): generous
    enough that a line it passes does not overflow the page.

    >>> round(width(r"\\frac{1}{n} \\sum_{i} x_{ij}"), 1)
    3.8
    """
    return _width([t for t in _TOKEN.findall(tex) if not t.isspace() or t == " "], 1.0, True)


def _group(tokens: list[str], position: int) -> tuple[list[str], int]:
    """The argument starting at ``position``: a braced group's tokens, or one token."""
    while position < len(tokens) and tokens[position] == " ":
        position += 1
    if position >= len(tokens):
        return [], position
    if tokens[position] != "{":
        return [tokens[position]], position + 1
    depth, start = 0, position
    for end in range(position, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[end], 0)
        if depth == 0:
            return tokens[start + 1:end], end + 1
    return tokens[start + 1:], len(tokens)


def _width(tokens: list[str], scale: float, display: bool) -> float:
    total, position, previous, last_script = 0.0, 0, "", 0.0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token == " ":
            continue
        if token == "{":
            inner, position = _group(tokens, position - 1)
            total += _width(inner, scale, display)
        elif token in ("^", "_"):
            inner, position = _group(tokens, position)
            script = 0.7 * _width(inner, scale, False)
            if previous in ("^", "_"):  # a sub- and superscript stack: the wider counts
                total += max(0.0, script - last_script)
            else:
                total += script
            last_script = script
        elif token == r"\frac":
            top, position = _group(tokens, position)
            bottom, position = _group(tokens, position)
            inner = scale if display else 0.7 * scale
            total += max(_width(top, inner, False), _width(bottom, inner, False)) + 0.25 * scale
        elif token in _LIMITS:
            below = 0.0
            if position < len(tokens) and tokens[position] == "_":
                inner, position = _group(tokens, position + 1)
                below = 0.7 * _width(inner, scale, False)
            total += (max(_LIMITS[token], below) if display else _LIMITS[token] * 0.75) * scale \
                + 0.17 * scale
        elif token in _WORDS:
            inner, position = _group(tokens, position)
            letters = sum(1 for t in inner if t not in ("{", "}", " ")) + inner.count(" ")
            total += (0.55 * letters + 0.1 * inner.count(r"\_") + 0.2) * scale
        elif token in (r"\mathbb", r"\mathcal", r"\hat", r"\bar", r"\tilde", r"\vec", r"\dot"):
            inner, position = _group(tokens, position)
            total += max(_width(inner, scale, display), 0.6 * scale)
        elif token in (r"\boxed", r"\sqrt"):
            inner, position = _group(tokens, position)
            total += _width(inner, scale, display) + 0.9 * scale
        elif token in _DELIMITERS:
            _, position = _group(tokens, position)
            total += 0.45 * scale * (1.3 if token.startswith(r"\bigg") else 1.0)
        elif token in _SPACES:
            total += _SPACES[token] * scale
        elif token in ("=", "<", ">", r"\le", r"\ge", r"\in", r"\pluseq"):
            total += (0.78 + 0.56) * scale
        elif token in ("+", "-"):
            binary = previous not in ("", "(", "[", "{", "=", "^", "_", r"\left", r"\bigl",
                                      r"\biggl", ",")
            total += (0.78 + (0.44 if binary else 0.0)) * scale
        elif token.startswith("\\") and token[1:].isalpha():
            total += 0.62 * scale  # a letter-like symbol: Greek, \partial, \ldots
        elif token in ",;":
            total += 0.28 * scale
        elif token in "()[]|":
            total += 0.39 * scale
        elif token.isdigit():
            total += 0.5 * scale
        elif token != "&":
            total += 0.58 * scale
        previous = token
    return total


__all__ = ["backward_latex", "document", "gradient_latex", "layout", "printer_for", "program_latex", "width"]
