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
    assert len(report["rows"]) == 52
    for row in report["rows"]:
        assert set(row) == {"name", "target", "exact", "approximate", "maxdiff", "relmaxdiff",
                            "reference"}
        assert row["reference"] == "autograd"
        assert row["target"] in ("torch", "numpy")
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
    assert run("regen", "--root", str(tmp_path)).returncode == 0
    assert run("regen", "--check", "--root", str(tmp_path)).returncode == 0
    assert not (tmp_path / "generated" / "orphan_numpy.py").exists()


def test_regen_writes_nothing_when_a_derivation_is_bad(root, tmp_path):
    shutil.copytree(root / "derivations", tmp_path / "derivations")
    (tmp_path / "derivations" / "bad.py").write_text(BAD_PROGRAM)
    result = run("regen", "--root", str(tmp_path))
    assert result.returncode == 2
    assert not (tmp_path / "generated").exists()
