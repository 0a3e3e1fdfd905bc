"""The engines a document goes through: pdflatex, run in a private temporary folder holding only a
copy of the ``.tex``, with shell escape off and paranoid file access, so a document can read or
write nothing else (only the PDF comes back); and pdftoppm, whose pages symderive marks, so that
it later removes only pages it wrote. A missing engine names the Debian package to install.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

from ..codegen.files import write_atomically
from ..program.ir import ProgramError

# -- engines ---------------------------------------------------------------------------------------
# pdflatex obeys whatever TeX a document holds, so it compiles a copy in a private empty folder,
# with shell escape off and kpathsea's paranoid file access (no absolute paths, no "..", no dot
# files): \input finds nothing of the user's, \openout writes only into the folder thrown away,
# and only the PDF comes back. The user's folder never sees the .aux or .log.
_TEXINPUT = "document"


def _engine_environment() -> dict:
    environment = dict(os.environ, openin_any="p", openout_any="p", shell_escape="f")
    environment.pop("TEXMFOUTPUT", None)  # paranoid mode would let TeX write there as well
    return environment


def compile_pdf(tex_path: str | Path, keep_log: bool = False) -> Path:
    """Run pdflatex on a copy of ``tex_path`` in a private temporary folder, without shell escape
    and with ``openin_any=p`` and ``openout_any=p``, and move the PDF beside ``tex_path`` (its path
    is returned); the ``.log`` comes too with ``keep_log``. A missing engine or a LaTeX error is a
    ``ProgramError`` naming what to install or the first error line."""
    tex_path = Path(tex_path).resolve()
    engine = shutil.which("pdflatex")
    if engine is None:
        raise ProgramError("pdflatex not found: install texlive-latex-base and "
                           "texlive-latex-recommended (Debian)")
    if not tex_path.is_file():
        raise ProgramError(f"{tex_path}: no such .tex file")
    pdf = tex_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="symderive-latex-") as private:
        work = Path(private)
        shutil.copyfile(tex_path, work / f"{_TEXINPUT}.tex")
        try:
            done = subprocess.run(
                [engine, "-no-shell-escape", "-halt-on-error", "-interaction=nonstopmode",
                 f"{_TEXINPUT}.tex"], cwd=work, env=_engine_environment(),
                stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                timeout=300)
        except subprocess.TimeoutExpired:
            raise ProgramError(f"{tex_path}: pdflatex did not finish in 300 s") from None
        log, built = work / f"{_TEXINPUT}.log", work / f"{_TEXINPUT}.pdf"
        if done.returncode != 0 or not built.is_file():
            text = log.read_text(errors="replace") if log.is_file() else done.stdout
            errors = [line for line in text.splitlines() if line.startswith("!")]
            first = errors[0] if errors else f"exit status {done.returncode}"
            raise ProgramError(f"{tex_path}: pdflatex failed: {first}")
        write_atomically(pdf, built.read_bytes())
        if keep_log:
            write_atomically(tex_path.with_suffix(".log"), log.read_bytes())
    return pdf


# Each page to_png writes carries this PNG text chunk; only a page carrying it is ever removed.
_MARK = b"Software\x00symderive"


def _png_chunks(data: bytes):
    """``(type, body, start)`` of each chunk of a PNG file; stops at anything malformed."""
    position = 8
    while data.startswith(b"\x89PNG\r\n\x1a\n") and position + 12 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if len(body) != length:
            return
        yield kind, body, position
        position += 12 + length


def marked(data: bytes) -> bytes:
    """The PNG ``data`` with symderive's ``Software`` text chunk inserted before its IEND."""
    end = next(start for kind, _, start in _png_chunks(data) if kind == b"IEND")
    chunk = b"tEXt" + _MARK
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    return data[:end] + len(_MARK).to_bytes(4, "big") + chunk + crc + data[end:]


def is_marked(path: Path) -> bool:
    """Whether the file at ``path`` is a PNG page symderive wrote (it carries the mark)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(kind == b"tEXt" and body == _MARK for kind, body, _ in _png_chunks(data))


def to_png(pdf_path: str | Path, resolution: int = 150) -> list[Path]:
    """Render every page of ``pdf_path`` with pdftoppm to ``<stem>-<page>.png`` beside it, each
    marked as symderive's; a ``<stem>-<digits>.png`` left from a longer document is removed only
    when it carries the mark, so no file of the user's is touched."""
    pdf_path = Path(pdf_path).resolve()
    engine = shutil.which("pdftoppm")
    if engine is None:
        raise ProgramError("pdftoppm not found: install poppler-utils (Debian)")
    with tempfile.TemporaryDirectory(prefix="symderive-png-") as private:
        done = subprocess.run([engine, "-r", str(int(resolution)), "-png", str(pdf_path), "page"],
                              cwd=private, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=300)
        if done.returncode != 0:
            lines = (done.stderr or "").strip().splitlines()
            raise ProgramError(f"{pdf_path}: pdftoppm failed: "
                               f"{lines[0] if lines else f'exit status {done.returncode}'}")
        pages = []
        for rendered in sorted(Path(private).glob("page-*.png"), key=_page_number):
            page = pdf_path.with_name(f"{pdf_path.stem}-{rendered.stem.rsplit('-', 1)[1]}.png")
            write_atomically(page, marked(rendered.read_bytes()))
            pages.append(page)
    pattern = re.compile(rf"{re.escape(pdf_path.stem)}-\d+\.png")
    for old in pdf_path.parent.glob(f"{glob.escape(pdf_path.stem)}-*.png"):
        if pattern.fullmatch(old.name) and old not in pages and is_marked(old):
            old.unlink()
    return pages


def _page_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])
