"""Which LaTeX a derivation may give as a name's spelling (``Builder.latex(bnraw=r"\\hat{x}")``).
The spelling is pasted into the document's math as it is, and pdflatex obeys whatever TeX it holds
(``\\input`` reads a file, ``\\openout`` and ``\\write`` write one, ``\\write18`` runs a program,
``^^5c`` spells a backslash), so a spelling is parsed against a whitelist: letters, digits,
operators, balanced braces, sub- and superscripts with an argument, and the math commands below
(Greek letters, accents, font commands, a few symbols). Anything else is refused by naming it.
"""
from __future__ import annotations

import re
import string

GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
         "vartheta", "iota", "kappa", "varkappa", "lambda", "mu", "nu", "xi", "pi", "varpi", "rho",
         "varrho", "sigma", "varsigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
         "digamma", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi",
         "Psi", "Omega"}
GREEK |= {"var" + name for name in GREEK if name[0].isupper()}  # amsmath's italic capitals
# commands that decorate or set the font of the one argument after them
ACCENTS = {"hat", "bar", "tilde", "dot", "ddot", "vec", "check", "breve", "acute", "grave",
           "mathring", "widehat", "widetilde", "overline", "underline"}
FONTS = {"mathrm", "mathbf", "mathcal", "mathbb", "mathit", "mathsf", "mathtt", "mathfrak",
         "boldsymbol", "operatorname"}
SYMBOLS = {"prime", "ast", "star", "ell", "hbar", "imath", "jmath", "partial", "nabla", "infty",
           "dagger", "ddagger", "circ", "bullet", "cdot", "times", "top", "bot", "perp",
           "emptyset", "varnothing", "aleph", "wp", "Re", "Im", "sharp", "flat", "natural",
           "quad", "qquad"}
COMMANDS = GREEK | ACCENTS | FONTS | SYMBOLS
TAKES_ARGUMENT = {"\\" + name for name in ACCENTS | FONTS} | {"^", "_"}
CONTROL_SYMBOLS = {r"\,", r"\;", r"\:", r"\!", "\\ ", r"\{", r"\}", r"\|"}  # spacing, delimiters
CHARACTERS = set(string.ascii_letters + string.digits + " +-*/=<>()[]|,.;:'!")

_TOKEN = re.compile(r"\\[A-Za-z]+|\\[^A-Za-z]|\^\^|.", re.S)


def spelling_problem(spelling: str) -> str | None:
    r"""Why ``spelling`` may not be pasted into the document (None when it may).

    >>> spelling_problem(r"\hat{x}_{1}") is None, spelling_problem(r"\input{x}").split()[0]
    (True, "'\\input'")
    """
    tokens = _TOKEN.findall(spelling)
    depth = 0
    for position, token in enumerate(tokens):
        if token == "^^":
            return ("'^^' is TeX's character-code escape, which can spell any command; write the "
                    "characters themselves")
        if token.startswith("\\") and token[1:].isalpha():
            if token[1:] not in COMMANDS:
                return (f"'{token}' is not a math command a LaTeX spelling may use (Greek letters "
                        r"such as \lambda, accents such as \hat, fonts such as \mathrm, symbols "
                        r"such as \ell); write the name with those")
        elif token.startswith("\\") and len(token) == 2:
            if token not in CONTROL_SYMBOLS:
                return (f"'{token}' is not allowed in a LaTeX spelling; of the backslash symbols "
                        r"only the spaces \, \; \: \! and \{ \} \| are")
        elif token in "{}":
            depth += 1 if token == "{" else -1
            if depth < 0:
                return "a '}' closes no '{'; balance the braces"
        elif token not in CHARACTERS and token not in ("^", "_"):
            shown = repr(token) if not token.isprintable() else f"'{token}'"
            return (f"{shown} is not allowed in a LaTeX spelling; use ASCII letters, digits, "
                    r"+ - * / = < > ( ) [ ] | , . ; : ' !, braces, ^ and _, and math commands "
                    r"(a Greek letter is \lambda)")
        if token in TAKES_ARGUMENT:
            following = [t for t in tokens[position + 1:] if t != " "]
            if not following or following[0] in ("}", "^", "_"):
                return f"'{token}' needs an argument after it, e.g. {token}{{x}}"
    if depth:
        return "a '{' is never closed; balance the braces"
    if not spelling.strip():
        return "it is empty; give the LaTeX for the name, e.g. \\hat{x}"
    return None


__all__ = ["COMMANDS", "spelling_problem"]
