"""LaTeX: the printer spells each construct as a textbook does (golden strings), every derivation's
document is free of SymPy's internals and has one line per rewrite step, and every document
compiles with pdflatex without running off the page."""
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
import sympy as sp
from sympy import Idx, IndexedBase, KroneckerDelta, Rational, Sum, exp, log, symbols, tanh

from symderive.algebra.simplify import compact_gradients
from symderive.codegen.files import without_inputs
from symderive.program.ir import ProgramError
from symderive.program.load import load
from symderive.program.ops import ArgMax, Maximum
from symderive.tex import documents as latex
from symderive.tex import engines
from symderive.tex.printer import IndexLatexPrinter, default_name

ROOT = Path(__file__).resolve().parent.parent.parent
DERIVATIONS = sorted(p.name for p in (ROOT / "derivations").glob("*.py"))

n, d, V, B, E = symbols("n d V B E", integer=True, positive=True)
eps = symbols("eps", positive=True)
i, j, k, c, t, e = Idx("i", n), Idx("j", d), Idx("k", n), Idx("c", V), Idx("t", B), Idx("e", E)
x, y, Y, X, C, W1, embcat, logprobs, bnvar, s, gamma = symbols(
    "x y Y X C W1 embcat logprobs bnvar s gamma", cls=IndexedBase)
dx, dbnraw = IndexedBase("dx"), IndexedBase("dbnraw")


def show(expr, names=None, adjoints=None, ranges=None):
    return IndexLatexPrinter(names, adjoints, ranges=ranges).doprint(expr)


# -- the printer, construct by construct ---------------------------------------------------------
@pytest.mark.parametrize("expr, expected", [
    (x[i, j], "x_{ij}"),
    (W1[k, j], "W_{1,\\,kj}"),  # a name with a subscript of its own takes the indices after it
    (gamma[j], "\\gamma_{j}"),
    (embcat[i, k], "\\mathrm{embcat}_{ik}"),
    (logprobs[i, Y[i]], "\\mathrm{logprobs}_{i,\\,Y_{i}}"),  # label read
    (C[X[i, t], e], "C_{X_{it},\\,e}"),  # gather
    (embcat[i, E * t + e], "\\mathrm{embcat}_{i,\\,E t + e}"),  # row-major flatten
    (Sum(x[i, j], i) / n, "\\frac{1}{n} \\sum_{i} x_{ij}"),  # sum over the declared range
    (Sum(x[i, j], (i, 1, n - 1)), "\\sum_{i=1}^{n - 1} x_{ij}"),  # not the declared range
    (Sum(x[i, j] * y[i, j], i, j), "\\sum_{i,j} x_{ij} y_{ij}"),
    (Sum(x[i, j], i) * Sum(y[i, j], i), "\\left(\\sum_{i} x_{ij}\\right) \\sum_{i} y_{ij}"),
    (KroneckerDelta(i, k), "\\delta_{ik}"),  # delta between two indices
    (KroneckerDelta(c, Y[i]), "\\mathbf{1}[c = Y_{i}]"),  # label delta
    (KroneckerDelta(Y[i], c), "\\mathbf{1}[c = Y_{i}]"),  # the index is written first
    (Maximum(x[i, c], c), "\\max_{c} x_{ic}"),
    (KroneckerDelta(ArgMax(x[i, k], k), c), "\\mathbf{1}[c = \\operatorname{argmax}_{k} x_{ik}]"),
    ((bnvar[j] + eps) ** Rational(-3, 2), "\\left(\\mathrm{bnvar}_{j} + \\epsilon\\right)^{-3/2}"),
    (x[i, j] ** 2, "x_{ij}^{2}"),
    (s[i] ** -2 * x[i, c], "s_{i}^{-2} x_{ic}"),
    (Sum(x[i, j] ** 2, i) / (n - 1), "\\frac{1}{n - 1} \\sum_{i} x_{ij}^{2}"),  # sizes symbolic
    (x[i, c] / (n * s[i]), "\\frac{x_{ic}}{n s_{i}}"),
    (-Rational(1, 2) * x[i, j], "-\\frac{x_{ij}}{2}"),
    ((x[i, c] - KroneckerDelta(c, Y[i])) / n, "\\frac{x_{ic} - \\mathbf{1}[c = Y_{i}]}{n}"),
    (1 - y[i, j] ** 2, "1 - y_{ij}^{2}"),
    (exp(x[i, c]), "\\exp(x_{ic})"),
    (log(x[i, c]), "\\log(x_{ic})"),
    (tanh(x[i, j]), "\\tanh(x_{ij})"),
])
def test_printer_golden(expr, expected):
    assert show(expr) == expected


def test_printer_adjoints_names_and_order():
    adjoints = {"dx": "x", "dbnraw": "bnraw"}
    names = {"bnraw": r"\hat{x}", "bnvar": r"\sigma^2"}
    assert show(dbnraw[i, j], names, adjoints) == \
        r"\frac{\partial \mathcal{L}}{\partial \hat{x}_{ij}}"
    assert show(dx[i, j] / n, names, adjoints) == \
        r"\frac{1}{n}\, \frac{\partial \mathcal{L}}{\partial x_{ij}}"
    # the user's power-like name is parenthesised before it is raised again
    assert show((bnvar[j] + eps) ** Rational(-1, 2), names) == \
        r"\left(\sigma^2_{j} + \epsilon\right)^{-1/2}"
    assert show(bnvar[j] ** 2, names) == r"\left(\sigma^2_{j}\right)^{2}"
    # plain factors (fewest indices first), plain sums, adjoints, reductions last
    expr = dx[i, j] * (1 - y[i, j] ** 2) * gamma[j]
    assert show(expr, names, adjoints) == \
        r"\gamma_{j} (1 - y_{ij}^{2})\, \frac{\partial \mathcal{L}}{\partial x_{ij}}"


def test_printer_shows_a_range_that_differs_from_the_declared_one():
    bound = Idx("k", n)  # bound over n where the program declares k over B*E
    expr = Sum(x[bound, j], bound)
    assert show(expr) == r"\sum_{k} x_{kj}"
    assert show(expr, ranges={"k": (0, B * E - 1)}) == r"\sum_{k=0}^{n - 1} x_{kj}"
    assert show(expr, ranges={"k": (0, n - 1)}) == r"\sum_{k} x_{kj}"


@pytest.mark.parametrize("name, expected", [
    ("x", "x"), ("W1", "W_{1}"), ("b2", "b_{2}"), ("gamma", r"\gamma"), ("mu", r"\mu"),
    ("xhat", r"\hat{x}"), ("eps", r"\epsilon"), ("bnraw", r"\mathrm{bnraw}"),
    ("logit_maxes", r"\mathrm{logit\_maxes}"), ("Xb", r"\mathrm{Xb}"),
])
def test_default_names(name, expected):
    assert default_name(name) == expected


# -- documents -------------------------------------------------------------------------------------
_CACHE: dict = {}


def derived(name):
    """(program, compact gradients or None, document text), made once per derivation."""
    if name not in _CACHE:
        program = load(ROOT / "derivations" / name)
        gradients = None if program.adjoints == "all" else compact_gradients(program)
        # the names the derivation gives with Builder.latex
        _CACHE[name] = program, gradients, latex.document(program, None, gradients)
    return _CACHE[name]


def body(tex):
    return tex.split(r"\begin{document}", 1)[1]


@pytest.mark.parametrize("name", DERIVATIONS)
def test_document_has_no_sympy_internals(name):
    _, _, tex = derived(name)
    text = body(tex)
    for bad in ("Dummy", "KroneckerDelta", r"\mathrel", "Sum(", "Idx", "0..", "**"):
        assert bad not in text.split(r"\subsection*{Rules")[0], f"{name}: '{bad}' in the document"
    assert not re.search(r"\\_b?\d|[{\s,]_b?\d", text), f"{name}: an internal index name"
    assert text.count("{") == text.count("}"), f"{name}: unbalanced braces"


@pytest.mark.parametrize("name", DERIVATIONS)
def test_one_line_per_step(name):
    program, gradients, tex = derived(name)
    if gradients is None:  # atomic: one line per adjoint statement, += where it accumulates
        from symderive.algebra.grad import backward

        atomic = backward(program)
        lines = [line for line in body(tex).splitlines() if r"\frac{\partial \mathcal{L}}" in
                 line.split("&")[0] and "&" in line]
        assert len(lines) == len(atomic.body)
        assert sum(r"&\pluseq" in line for line in lines) == sum(s.accumulate for s in atomic.body)
        return
    blocks = body(tex).split("% gradient: ")[1:]
    assert [block.split("\n", 1)[0] for block in blocks] == [g.name for g in gradients]
    for gradient, block in zip(gradients, blocks):
        rules = re.findall(r"% step: (\S+)$", block, flags=re.M)
        assert rules == [step.rule for step in gradient.steps], gradient.name
        assert len(re.findall(rf"&& \\text{{{latex.START}}}", block)) == 1
        assert block.count(r"\boxed{") == 1


def test_forward_rewrites_are_shown_with_their_conditions():
    """The emitted forward of cross-entropy folds log of exp and reads probs at the labels only;
    the document shows each rewrite as a line with its rule, then the rule's side condition."""
    program, _, tex = derived("cross_entropy.py")
    section = body(tex).split(r"\subsubsection*{Rewrites of the forward}")[1].split(
        r"\subsection*{Backward}")[0]
    rules = re.findall(r"% step: (.+)$", section, flags=re.M)
    assert rules == ["log of exp", "read through map", "log of exp", "read through map"]
    assert r"\item[log of exp] every factor is non-negative" in section
    assert r"Rewrites of the forward" not in derived("batchnorm.py")[2]  # nothing to rewrite


def test_batchnorm_document_reads_like_the_math():
    program, gradients, tex = derived("batchnorm.py")
    assert r"\mu_{j} &= \frac{1}{n} \sum_{i} x_{ij}" in tex
    assert r"\sigma^{2}_{j} &= \frac{1}{n - 1} \sum_{i} q_{ij}" in tex
    assert r"r_{j} &= \left(\sigma^{2}_{j} + \epsilon\right)^{-1/2}" in tex
    assert "fold-power" in tex and "reduction-fact" in tex
    assert re.search(r"\\boxed\{\\gamma_\{j\} r_\{j\}", tex)  # the compact form, factored
    assert r"\partial \mathcal{L} / \partial y_{ij}$ is given" in tex


def test_long_lines_are_broken_within_the_budget():
    terms = sp.Add(*[Sum(x[k, j] * y[k, j], k) * x[i, j] ** p for p in range(1, 12)])
    printer = IndexLatexPrinter()
    lines = latex.layout(terms, printer, 30.0)
    assert len(lines) > 2
    assert all(latex.width(line) <= 30.0 for line in lines)
    assert all(line.startswith("{} + ") for line in lines[1:])
    assert "".join(lines).count(r"\sum") == 11
    product = gamma[j] * terms
    lines = latex.layout(product, printer, 30.0)
    assert lines[0].startswith(r"\gamma_{j} \biggl(") and lines[-1].endswith(r"\biggr)")


def test_a_long_product_of_reductions_is_broken_between_its_factors():
    """No sum to open: the plain factors, then each reduction on its own line when it does not
    fit, continuation lines starting with a product sign, every reduction but the last in
    parentheses; a short factor before a single reduction stays on its line."""
    reductions = [Sum(x[k, j] ** p * y[k, j], k) for p in range(1, 5)]
    product = -gamma[j] * sp.Mul(*reductions)
    printer = IndexLatexPrinter()
    lines = latex.layout(product, printer, 20.0)
    assert len(lines) > 1 and lines[0].startswith("-")
    assert all(line.startswith(r"{} \cdot ") for line in lines[1:])
    text = "".join(lines)
    assert text.count(r"\sum") == 4 and text.count(r"\left(\sum") == 3
    assert latex.layout(gamma[j] * reductions[0], printer, 5.0) == [
        printer.doprint(gamma[j] * reductions[0])]


# -- engines ---------------------------------------------------------------------------------------
def _require(tool, package):
    if shutil.which(tool) is None:  # CI installs it: a missing engine fails, it does not skip
        pytest.fail(f"{tool} not found: install {package} (Debian) to run the LaTeX tests")


OVERFULL = re.compile(r"Overfull \\hbox \(([\d.]+)pt too wide\)")


@pytest.mark.parametrize("name", DERIVATIONS)
def test_document_compiles_without_overflow(name, tmp_path):
    """The committed generated/<name>.tex (the same text, or regen --check fails) compiles with
    pdflatex -halt-on-error, and no line runs off the page."""
    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    program, _, tex = derived(name)
    committed = ROOT / "generated" / f"{program.name}.tex"
    # (the committed file ends with the line stating what it was made from)
    assert without_inputs(committed.read_text()) == tex, f"{committed} is stale: run symderive regen"
    path = tmp_path / committed.name
    path.write_text(committed.read_text())
    pdf = engines.compile_pdf(path, keep_log=True)
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    log = path.with_suffix(".log").read_text(errors="replace")
    overfull = [float(w) for w in OVERFULL.findall(log)]
    assert all(w < 1.0 for w in overfull), f"{name}: lines run off the page by {overfull} pt"
    assert not path.with_suffix(".aux").exists()


def test_rule_names_are_in_the_pdf_text(tmp_path):
    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    _require("pdftotext", "poppler-utils")
    program, gradients, tex = derived("batchnorm.py")
    path = tmp_path / "batchnorm.tex"
    path.write_text(tex)
    pdf = engines.compile_pdf(path)
    assert not path.with_suffix(".log").exists()
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    for rule in {step.rule for g in gradients for step in g.steps}:
        assert rule in text, rule


def test_png_pages(tmp_path):
    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    _require("pdftoppm", "poppler-utils")
    path = tmp_path / "cross_entropy.tex"
    path.write_text(derived("cross_entropy.py")[2])
    pngs = engines.to_png(engines.compile_pdf(path), resolution=30)
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert [p.name for p in pngs][0].startswith("cross_entropy-")


def test_latex_errors_are_program_errors(tmp_path):
    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    path = tmp_path / "broken.tex"
    path.write_text("\\documentclass{article}\\begin{document}$\\frac{1}$\\undefinedcommand"
                    "\\end{document}\n")
    with pytest.raises(ProgramError, match=r"broken.tex: pdflatex failed: !"):
        engines.compile_pdf(path)
    assert not path.with_suffix(".log").exists()


def test_missing_engines_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    with pytest.raises(ProgramError, match="texlive-latex-base and texlive-latex-recommended"):
        engines.compile_pdf(tmp_path / "x.tex")
    with pytest.raises(ProgramError, match="poppler-utils"):
        engines.to_png(tmp_path / "x.pdf")


# -- untrusted input: names, spellings and documents ------------------------------------------------
def test_unicode_names_compile(tmp_path):
    """Unicode identifiers are valid names; each one the printer spells by default (array, index,
    size, constant, and the program's own in text mode) compiles with the real pdflatex."""
    from symderive import Builder

    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    size, mu = symbols("名", integer=True, positive=True), symbols("μ")
    index, lam, out = Idx("é", size), IndexedBase("λ"), IndexedBase("y")
    layer = Builder("ünicode_λ", sizes={size: 3}, constants={mu: 0.5})
    layer.input(lam[index])
    layer[out[index]] = mu * tanh(lam[index])
    layer.output(out)
    tex = latex.document(layer.build())
    for spelling in (r"\lambda_{\acute{e}}", r"\mu", r"\langle\mathrm{U{+}540D}\rangle",
                     r"\texttt{\"{u}nicode\_$\lambda$}"):
        assert spelling in tex
    path = tmp_path / "unicode.tex"
    path.write_text(tex)
    assert engines.compile_pdf(path).read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name, expected", [
    ("λ", r"\lambda"), ("Λ", r"\Lambda"), ("Α", "A"), ("ς", r"\varsigma"), ("λ2", r"\lambda_{2}"),
    ("é", r"\acute{e}"), ("名", r"\langle\mathrm{U{+}540D}\rangle"), ("omicron", "o"),
    ("x٣", r"\mathrm{x{\langle\mathrm{U{+}0663}\rangle}}"),  # another script's digit
    ("σ_min", r"\mathrm{{\sigma}\_min}"),
])
def test_default_names_of_unicode(name, expected):
    assert default_name(name) == expected


def test_spellings_given_to_the_printer_are_checked():
    program = derived("batchnorm.py")[0]
    with pytest.raises(ProgramError, match=r"latex\(bnraw=\.\.\.\): '\\input' is not a math"):
        latex.document(program, {"bnraw": r"\input{/etc/hostname}"})


def test_builder_latex_refuses_a_payload_in_one_line():
    from symderive import Builder

    layer = Builder("case", sizes={n: 3})
    for spelling, piece in [(r"\input{/etc/hostname}", r"'\input'"), ("^^5cinput{x}", "'^^'"),
                            (r"\csname input\endcsname", r"'\csname'"),
                            (r"\immediate\write18{id}", r"'\immediate'"),
                            (r"\catcode`\~=13", r"'\catcode'")]:
        with pytest.raises(ProgramError) as error:
            layer.latex(x=spelling)
        message = str(error.value)
        assert message.startswith(f"case: latex(x=...): {piece} ") and "\n" not in message
    assert layer.latex_names == {}
    layer.latex(x=r"\hat{\mathbf{x}}_{1}'")  # what a textbook writes still passes


PAYLOAD = r"""\documentclass{article}
\begin{document}
Start.
\immediate\openout5=pwned.py\immediate\write5{import os}\immediate\closeout5
\immediate\write18{touch MARKER}

\IfFileExists{SECRET}{\input{SECRET}}{ABSOLUTE-NOT-READ}

\IfFileExists{beside.tex}{\input{beside}}{BESIDE-NOT-READ}

\IfFileExists{../outside.tex}{\input{../outside}}{PARENT-NOT-READ}

\IfFileExists{SECRET}{^^5cinput{SECRET}}{ESCAPE-NOT-READ}
\end{document}
"""  # a paragraph per test, so no line (and no word) is broken


def test_a_hand_written_payload_compiles_inertly(tmp_path):
    """compile_pdf runs pdflatex on a copy in a private folder, without shell escape and with
    kpathsea's paranoid file access: a .tex that tries to read files (absolutely, beside it, in
    the parent) or to write or run something gets a PDF with none of it, and the folder gains
    only the PDF (no .aux, .log or written file)."""
    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    _require("pdftotext", "poppler-utils")
    secret = tmp_path / "secret.tex"
    secret.write_text("SECRET-ABSOLUTE\n")
    (tmp_path / "outside.tex").write_text("SECRET-PARENT\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "beside.tex").write_text("SECRET-BESIDE\n")
    (user / "evil.tex").write_text(PAYLOAD.replace("SECRET", str(secret)))
    pdf = engines.compile_pdf(user / "evil.tex")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Start." in text and "SECRET" not in text
    for word in ("ABSOLUTE", "BESIDE", "PARENT", "ESCAPE"):
        assert f"{word}-NOT-READ" in text
    assert sorted(p.name for p in user.iterdir()) == ["beside.tex", "evil.pdf", "evil.tex"]
    assert not list(tmp_path.rglob("MARKER")) and not Path("MARKER").exists()
    assert not list(tmp_path.rglob("pwned.py")) and not Path("pwned.py").exists()


def _png() -> bytes:
    """A valid 1x1 grey PNG, not written by symderive."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + \
            zlib.crc32(kind + body).to_bytes(4, "big")

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", bytes([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0])) \
        + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")


def test_png_mark_is_a_valid_chunk():
    data = engines.marked(_png())
    position, kinds = 8, []
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        crc = data[position + 8 + length:position + 12 + length]
        assert crc == zlib.crc32(kind + body).to_bytes(4, "big")
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"tEXt", b"IEND"]


def test_png_replaces_only_its_own_pages(tmp_path):
    """to_png writes its pages marked; a stale page of its own is removed, a foreign file with a
    page-like name (unmarked) or another name is left alone, and the folder gains no other file."""
    _require("pdflatex", "texlive-latex-base and texlive-latex-recommended")
    _require("pdftoppm", "poppler-utils")
    path = tmp_path / "cross_entropy.tex"
    path.write_text(derived("cross_entropy.py")[2])
    pdf = engines.compile_pdf(path)
    foreign = {"cross_entropy-notes.png": _png(), "cross_entropy-9.png": _png()}
    for name, data in foreign.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "cross_entropy-1.png").write_bytes(engines.marked(_png()))  # an earlier run's
    (tmp_path / "cross_entropy-8.png").write_bytes(engines.marked(_png()))  # a longer document's
    pages = engines.to_png(pdf, resolution=30)
    assert [p.name for p in pages] == [f"cross_entropy-{k}.png" for k in range(1, len(pages) + 1)]
    assert len(pages) < 8
    assert all(engines.is_marked(p) for p in pages)
    assert pages[0].read_bytes() != engines.marked(_png())  # replaced by the rendered page
    assert not (tmp_path / "cross_entropy-8.png").exists()
    for name, data in foreign.items():
        assert (tmp_path / name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["cross_entropy.tex", "cross_entropy.pdf", *foreign, *(p.name for p in pages)])
