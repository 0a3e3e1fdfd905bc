"""The command line contract: exit codes, one-line errors, the JSON schema, regen --check."""
import json
import shutil
import subprocess
import sys

import pytest

from symderive.cli import main

BAD_PROGRAM = '''
from sympy import Idx, IndexedBase, symbols
from symderive import Builder
n = symbols("n", integer=True, positive=True)
i = Idx("i", n)
x, y = IndexedBase("x"), IndexedBase("y")
b = Builder("bad", sizes={n: 3})
b.input(x[i])
b[y[i]] = x[i] * z[i]
b.output(y)
program = b.build()
'''


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "symderive", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def test_check_json_schema(root):
    result = run("check", str(root / "derivations" / "makemore_mlp.py"), "--json", "--seed", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"derivation", "dtype", "ok", "rows"}
    assert report["derivation"] == "makemore_mlp" and report["dtype"] == "float32" and report["ok"]
    counts = {}
    for row in report["rows"]:
        counts[row["target"], row["reference"]] = counts.get((row["target"], row["reference"]), 0) + 1
    # every adjoint per target against the oracle; the Function and finite differences per input
    assert counts == {("torch", "oracle"): 26, ("numpy", "oracle"): 26, ("function", "oracle"): 7,
                      ("torch", "finite differences"): 7}
    for row in report["rows"]:
        assert set(row) == {"name", "target", "exact", "approximate", "maxdiff", "relmaxdiff",
                            "reference"}
        assert row["reference"] in ("oracle", "finite differences")
        assert row["target"] in ("torch", "numpy", "function")
        assert isinstance(row["maxdiff"], float) and isinstance(row["relmaxdiff"], float)


def test_check_table_format(root, capsys):
    assert main(["check", str(root / "derivations" / "makemore_mlp.py")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("logprobs        | exact: ")
    assert " | approximate: True  | maxdiff: " in lines[1]


@pytest.mark.parametrize("args", [["check"], ["check", "x.py", "--dtype", "float16"], ["frobnicate"],
                                  ["emit", "x.py"]])
def test_bad_arguments_exit_2_with_one_line(args):
    result = run(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_bad_derivation_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(BAD_PROGRAM)
    result = run("check", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "NameError" in result.stderr and "bad.py" in result.stderr


def test_missing_file_exits_2(tmp_path):
    result = run("emit", str(tmp_path / "nope.py"), "--target", "numpy")
    assert result.returncode == 2 and "no such derivation file" in result.stderr


def test_emit_writes_the_module(root, tmp_path):
    result = run("emit", str(root / "derivations" / "makemore_mlp.py"), "--target", "numpy",
                 "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "makemore_mlp_numpy.py"
    assert written.read_text() == (root / "generated" / "makemore_mlp_numpy.py").read_text()


def test_regen_check_passes_on_the_repository(root):
    result = run("regen", "--check", "--root", str(root))
    assert result.returncode == 0, result.stdout + result.stderr


def test_regen_check_names_stale_files_and_regen_fixes_them(root, tmp_path):
    shutil.copytree(root / "derivations", tmp_path / "derivations")
    shutil.copytree(root / "generated", tmp_path / "generated")
    stale = tmp_path / "generated" / "makemore_mlp_torch.py"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    (tmp_path / "generated" / "orphan_numpy.py").write_text("")
    result = run("regen", "--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "makemore_mlp_torch.py" in result.stdout and "orphan_numpy.py" in result.stdout
    assert "makemore_mlp_numpy.py" not in result.stdout
    result = run("regen", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"removed: {tmp_path / 'generated' / 'orphan_numpy.py'}" in result.stdout.splitlines()
    assert run("regen", "--check", "--root", str(tmp_path)).returncode == 0
    assert not (tmp_path / "generated" / "orphan_numpy.py").exists()


def test_regen_writes_nothing_when_a_derivation_is_bad(root, tmp_path):
    shutil.copytree(root / "derivations", tmp_path / "derivations")
    (tmp_path / "derivations" / "bad.py").write_text(BAD_PROGRAM)
    result = run("regen", "--root", str(tmp_path))
    assert result.returncode == 2
    assert not (tmp_path / "generated").exists()


def test_sigterm_during_a_write_leaves_no_temp_file(tmp_path, root):
    """Killed (SIGTERM) while the temp file is open: the command exits and removes it."""
    import signal
    import time

    script = f'''
import os, sys, time
import symderive.emit as emit
real = os.fchmod
def slow(fd, mode):
    print("writing", flush=True)
    time.sleep(60)
os.fchmod = slow
from symderive.cli import main
sys.exit(main(["emit", {str(root / "derivations" / "cross_entropy.py")!r}, "--target", "numpy",
               "-o", {str(tmp_path)!r}]))
'''
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["emit", "regen"])
def test_emitted_code_that_does_not_run_is_not_written(tmp_path, root, monkeypatch, capsys,
                                                       command):
    """Exit 3 (symderive's own bug), naming the statement; nothing written or removed."""
    import symderive.cli as cli

    real = cli.module_source

    def broken(forward, backward, target):
        return real(forward, backward, target).replace("bndiff*bnvar_inv", "bndiff*bnvar_inv[:, 0]")

    monkeypatch.setattr(cli, "module_source", broken)
    project = tmp_path / "project"
    (project / "derivations").mkdir(parents=True)
    shutil.copy(root / "derivations" / "batchnorm.py", project / "derivations")
    (project / "generated").mkdir()
    (project / "generated" / "keep.py").write_text("# not ours\n")
    if command == "emit":
        args = ["emit", str(project / "derivations" / "batchnorm.py"), "--target", "numpy",
                "-o", str(project / "generated")]
    else:
        args = ["regen", "--root", str(project)]
    assert cli.main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "bnraw[i, j] = " in err[0]
    assert [p.name for p in (project / "generated").iterdir()] == ["keep.py"]


def test_latex_pdf_shows_every_step_of_derive(tmp_path, root, capsys):
    """The document compiles; pdftotext shows the rule names; one step line per step that
    derive --json counts; no SymPy internals in the .tex."""
    out = tmp_path / "OUT.tex"
    assert main(["latex", str(root / "derivations" / "batchnorm.py"), "--pdf", "-o", str(out)]) == 0
    assert (tmp_path / "OUT.pdf").is_file()
    text = subprocess.run(["pdftotext", str(tmp_path / "OUT.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    capsys.readouterr()
    assert main(["derive", str(root / "derivations" / "batchnorm.py"), "--json"]) == 0
    derived = json.loads(capsys.readouterr().out)
    tex = out.read_text()
    assert tex.count("% step:") == sum(g["steps"] for g in derived["gradients"]) > 0
    for rule in ("inline", "distribute", "fold-power", "reduction-fact", "fold", "factor"):
        assert rule in text
    for internal in ("Dummy", "KroneckerDelta", "_0", "_b0"):
        assert internal not in tex


def test_latex_without_an_engine_is_one_line(tmp_path, root, monkeypatch, capsys):
    import shutil as shell

    monkeypatch.setattr(shell, "which", lambda name, *args, **kwargs: None)
    out = tmp_path / "OUT.tex"
    assert main(["latex", str(root / "derivations" / "batchnorm.py"), "--pdf", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "texlive-latex-base" in err[0]
