"""The documentation runs: every fenced code block of README.md and docs/*.md is run or compared,
what a page shows as a command's output is what the command prints now, docs/rules.md and the
batchnorm document the pages show are current (the generated tables of docs/derivations.md and
docs/activations.md are checked by tests/test_cli.py and tests/test_activations.py), README.md's
links lead to files, and the site builds with ``mkdocs build --strict``.

How a block is treated is decided by the word after its opening fence:

- ``python``: executed. A page's blocks run in order, in one Python process per page, in one
  namespace (a block may use what an earlier block of the same page defined). The working folder
  is a fresh copy of the project's derivations/, generated/, examples/, data/ and docs/, and is on
  ``sys.path``, so ``from generated.batchnorm_torch import batchnorm`` works and nothing a page
  writes reaches the repository.
- ``pycon``: an interactive session, run in that same process and namespace by doctest
  (ELLIPSIS, NORMALIZE_WHITESPACE): what the page shows under each ``>>>`` line must be what it
  prints, a traceback's last line included.
- ``bash`` or ``sh``: every line that is not blank or a ``#`` comment is a command and must exit 0.
  A command is ``symderive ...`` or ``.venv/bin/symderive ...`` (run in process through
  ``symderive.cli.main``), or ``python ...``, ``python3 ...`` or ``.venv/bin/python ...`` (run
  with this interpreter as a subprocess, with a timeout). Any other command (a pipe, an
  environment variable, ``pip``, ``apt-get``) fails the test: fence such a block as ``text``.
- ``console``: a line ``$ COMMAND`` is such a command; the lines after it, up to the next ``$``
  line, are its output, which must equal what it prints (stdout and stderr together, in the
  order a terminal shows them). ``...`` on a line of its own stands for any number of lines and
  within a line for any text (an absolute path, a digit that varies), and a time such as
  ``0.07 s`` or ``3.66s`` matches any time. A command that ends in a comment ``# exit N`` must
  exit N; any other must exit 0.
- ``toml``: parsed with tomllib.
- ``text``: not run. Output shown without its command, a file's contents, or a command that is
  not meant to run here (a full training run, the full benchmark, an install).
- A fence with no word or another word fails the test, so no block is skipped silently.

An HTML comment on the line before a block (invisible on GitHub and on the site) changes that:

- ``<!-- docs-test: skip REASON -->``: not run. Only README.md's setup commands carry it (they make
  a virtualenv and run apt-get as root, which a test must not); the test fails on any other.
- ``<!-- docs-test: excerpt PATH -->``: the block is a verbatim excerpt of the repository's file
  PATH (a derivation, lines of a generated module) and is compared with it instead of being run.
- ``<!-- docs-test: file PATH -->``: the block is a file that the page's later commands read; it
  is written at PATH in the page's working folder, in its turn, instead of being run.

In plain words: fence a block ``text`` when it is output with no command above it, or a command
that must not run in a test; everything else runs, and what a page claims a command prints is what
it prints.

The same file is the runner of a page's blocks: ``python tests/test_docs.py BLOCKS.json`` runs in
the page's working folder and prints the first failure, exiting 1. Pages run two at a time.
"""
from __future__ import annotations

import doctest
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COPIED = ("derivations", "generated", "examples", "data", "docs")  # a page's working folder
LANGUAGES = {"python", "pycon", "bash", "sh", "console", "toml", "text"}
MARKER = re.compile(r"^<!-- docs-test: (skip|excerpt|file) (.+?) -->$")
SYMDERIVE = ("symderive", ".venv/bin/symderive")
PYTHON = ("python", "python3", ".venv/bin/python")
COMMAND_TIMEOUT = 120  # seconds, for one subprocess command
PAGE_TIMEOUT = 300


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: str = ""  # skip, excerpt or file
    argument: str = ""  # its reason or PATH

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown page, with the marker comment before each."""
    found, lines = [], path.read_text().splitlines()
    page = str(path.relative_to(ROOT))
    position = 0
    while position < len(lines):
        opening = re.match(r"^```(.*)$", lines[position])
        if not opening:
            position += 1
            continue
        end = next((k for k in range(position + 1, len(lines)) if lines[k] == "```"), None)
        assert end is not None, f"{page}:{position + 1}: a fence that is never closed"
        before = next((lines[k] for k in range(position - 1, -1, -1) if lines[k].strip()), "")
        marked = MARKER.match(before)
        found.append(Block(page, position + 1, opening.group(1).strip(),
                           "\n".join(lines[position + 1:end]) + "\n",
                           *(marked.groups() if marked else ())))
        position = end + 1
    return found


# -- the runner, in the page's working folder ------------------------------------------------------
class Unrunnable(Exception):
    pass


def command(line: str) -> tuple[list[str], int]:
    """The words of a command line and the exit code it must give (``# exit N``, else 0)."""
    expected = re.search(r"#\s*exit (\d+)\s*$", line)
    return shlex.split(line, comments=True), int(expected.group(1)) if expected else 0


def run_command(words: list[str]) -> tuple[int, str]:
    """Run one documented command: its exit code and what it printed."""
    if words[0] in SYMDERIVE:
        from symderive.cli import main

        printed = io.StringIO()  # stdout and stderr together, in order, as a terminal shows
        with redirect_stdout(printed), redirect_stderr(printed):
            try:
                code = main(words[1:])
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
        return code, printed.getvalue()
    if words[0] in PYTHON:
        done = subprocess.run([sys.executable, *words[1:]], check=False, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT,
                              env=os.environ | {"PYTHONUNBUFFERED": "1"})
        return done.returncode, done.stdout
    raise Unrunnable(f"'{words[0]}' is not a command the docs test runs (symderive or python); "
                     "fence the block as text if it is not meant to run")


def normalised(text: str) -> list[str]:
    """Lines without trailing blanks, every time (``0.07 s``, pytest's ``3.66s``) the same."""
    text = re.sub(r"\b\d+(\.\d+)? ?s\b", "<time> s", text)
    return [line.rstrip() for line in text.rstrip("\n").splitlines()]


def same_output(shown: list[str], printed: str) -> bool:
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == "..." else
                      "[^\n]*".join(map(re.escape, line.split("..."))) + "\n"
                      for line in normalised("\n".join(shown)))
    return re.fullmatch(pattern, "\n".join(normalised(printed)) + "\n") is not None


def run_console(block: dict) -> None:
    runs, current = [], None
    for line in block["text"].splitlines():
        if line.startswith("$ "):
            current = (line[2:], [])
            runs.append(current)
        elif current is None:
            raise AssertionError(f"{block['label']}: a console block starts with '$ COMMAND'")
        else:
            current[1].append(line)
    for line, shown in runs:
        words, expected = command(line)
        code, printed = run_command(words)
        assert code == expected, f"{block['label']}: `{line}` exited {code}:\n{printed}"
        assert same_output(shown, printed), (f"{block['label']}: `{line}` printed\n{printed}\n"
                                             "which is not what the page shows:\n"
                                             + "\n".join(shown))


def run_pycon(block: dict, namespace: dict) -> None:
    test = doctest.DocTestParser().get_doctest(block["text"], namespace, block["label"],
                                               block["label"], 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    result = runner.run(test, out=report.write, clear_globs=False)
    assert not result.failed, f"{block['label']}:\n{report.getvalue()}"


def run_page(blocks: list[dict]) -> None:
    """Run a page's blocks in order in the current folder; raise at the first failure."""
    sys.path.insert(0, str(Path.cwd()))
    namespace = {"__name__": "__main__"}
    for block in blocks:
        started = time.perf_counter()
        language, text = block["language"], block["text"]
        if block["marker"] == "file":
            path = Path(block["argument"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        elif language == "python":
            exec(compile(text, block["label"], "exec"), namespace)  # noqa: S102
        elif language == "pycon":
            run_pycon(block, namespace)
        elif language == "console":
            run_console(block)
        else:  # bash, sh
            for line in text.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    words, expected = command(line)
                    code, printed = run_command(words)
                    assert code == expected, (f"{block['label']}: `{line}` exited {code}:\n"
                                              f"{printed}")
        print(f"{block['label']}: {time.perf_counter() - started:.1f} s")  # shown on failure


def main(argv: list[str]) -> int:
    blocks = json.loads(Path(argv[0]).read_text())
    try:
        run_page(blocks)
    except Exception:  # noqa: BLE001 (any failure of a block is the page's to report)
        print(traceback.format_exc())
        return 1
    return 0


# -- the tests -------------------------------------------------------------------------------------
def runnable(block: Block) -> bool:
    return block.marker not in ("skip", "excerpt") and block.language not in ("text", "toml")


def test_every_block_has_a_known_language_and_marker():
    for page in PAGES:
        for block in blocks(page):
            assert block.language in LANGUAGES, (
                f"{block.label}: fence ```{block.language}; use one of {sorted(LANGUAGES)}")
            if block.marker == "skip":
                assert block.page == "README.md" and "apt-get" in block.text, (
                    f"{block.label}: only README.md's setup commands may be skipped")
            if block.marker == "file":
                assert block.language == "python", f"{block.label}: a file block is python"


def test_readme_skips_only_its_setup_commands():
    skipped = [b for b in blocks(ROOT / "README.md") if b.marker == "skip"]
    assert len(skipped) == 1 and "python3 -m venv .venv" in skipped[0].text
    readme = (ROOT / "README.md").read_text()
    assert readme.index(skipped[0].text) < readme.index("\n## ")  # the commands come first


def test_excerpts_are_verbatim():
    for page in PAGES:
        for block in blocks(page):
            if block.marker == "excerpt":
                assert block.text in (ROOT / block.argument).read_text(), (
                    f"{block.label}: no longer an excerpt of {block.argument}; paste it again")


def test_toml_blocks_parse():
    import tomllib

    for page in PAGES:
        for block in blocks(page):
            if block.language == "toml":
                tomllib.loads(block.text)


def run_in_copy(page: Path, folder: Path) -> tuple[int, str]:
    """Run the page's blocks in a fresh copy of the project at ``folder``."""
    todo = [asdict(b) | {"label": b.label} for b in blocks(page) if runnable(b)]
    if not todo:
        return 0, ""
    for name in COPIED:
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "blocks.json").write_text(json.dumps(todo))
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "blocks.json"],
                          check=False, cwd=folder, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=PAGE_TIMEOUT)
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def page_runs(request, tmp_path_factory):
    """The selected pages' runs, started together, two at a time (a page mostly waits for one
    CPU), the largest first; each test waits for its own."""
    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_page_blocks_run"]
    pool = ThreadPoolExecutor(max_workers=2)
    runs = {page: pool.submit(run_in_copy, page, tmp_path_factory.mktemp(page.stem))
            for page in sorted(selected, key=lambda p: -p.stat().st_size)}
    yield runs
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_blocks_run(page, page_runs):
    """The page's python, pycon, bash and console blocks run in a copy of the project, in order."""
    code, printed = page_runs[page].result()
    assert code == 0, printed


def test_readme_links_point_at_files():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), f"README.md links to {target}, which is missing"


def test_rules_page_is_current():
    """docs/rules.md's reference is what docs/make_rules_md.py makes from the rule table now."""
    import runpy

    script = runpy.run_path(str(ROOT / "docs" / "make_rules_md.py"))
    page = (ROOT / "docs" / "rules.md").read_text()
    assert page == script["render"](page), "run .venv/bin/python docs/make_rules_md.py"


def test_batchnorm_document_is_current():
    """The pictures the README and docs/latex.md show are of the document symderive writes now."""
    from symderive.api import latex

    shown = (ROOT / "docs" / "batchnorm.tex").read_text()
    assert shown == latex(ROOT / "derivations" / "batchnorm.py").tex, (
        "run .venv/bin/symderive latex derivations/batchnorm.py --png -o docs/batchnorm.tex")


def test_mkdocs_builds_strictly(tmp_path):
    """The site builds with every page in the nav and no broken link (strict: a warning fails)."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir",
                           str(tmp_path / "site")], check=False, capture_output=True, text=True,
                          timeout=120, env=os.environ | {"NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
