"""The pytest plugin: ``pytest --symderive`` in a user's project collects each derivation as a
``generated`` item, a ``check`` item per dtype, and ``gradcheck`` and ``gradgradcheck`` items for
its Function (run in a subprocess, in a temporary project)."""
import re
import shutil
import subprocess
import sys

import pytest

from symderive.cli import main


def pytest_in(project, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rN", *args], capture_output=True, text=True, cwd=project, check=False)


@pytest.fixture
def project(root, tmp_path, capsys):
    """Two derivations in configured folders, their generated files written by regen."""
    project = tmp_path / "project"
    (project / "layers").mkdir(parents=True)
    for name in ("cross_entropy", "layernorm"):
        shutil.copy(root / "derivations" / f"{name}.py", project / "layers")
    (project / "pyproject.toml").write_text(
        '[tool.symderive]\nderivations = "layers"\ngenerated = "out"\n')
    assert main(["regen", "--root", str(project)]) == 0
    capsys.readouterr()
    return project


def test_the_entry_point_is_registered():
    from importlib.metadata import entry_points

    assert "symderive.plugin" in {e.value for e in entry_points(group="pytest11")}


def test_every_derivation_is_collected_and_passes(project):
    result = pytest_in(project, "--symderive", "--collect-only")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("cross_entropy", "layernorm"):
        for item in ("generated", "check[float64]", "check[float32]", "gradcheck",
                     "gradgradcheck"):
            assert f"layers/{name}.py::{item}" in result.stdout
    result = pytest_in(project, "--symderive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed" in result.stdout


def test_without_the_option_nothing_is_collected(project):
    result = pytest_in(project)
    assert result.returncode == 5  # no tests collected
    assert "check[float64]" not in result.stdout


def test_a_stale_generated_file_fails_its_item(project):
    stale = project / "out" / "layernorm_torch.py"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    (project / "out" / "cross_entropy.tex").unlink()
    result = pytest_in(project, "--symderive", "-k", "generated")
    assert result.returncode == 1
    assert "2 failed" in result.stdout and "check[" not in result.stdout
    assert f"stale: {stale}" in result.stdout and "missing: " in result.stdout
    assert "run symderive regen" in result.stdout


def test_a_check_failure_prints_the_rows_that_differ(project):
    path = project / "layers" / "cross_entropy.py"
    text = path.read_text()
    assert '/ len(v["logits"])})' in text
    path.write_text(text.replace('/ len(v["logits"])})', '/ len(v["logits"]) * 2})'))
    result = pytest_in(project, "--symderive", "-k", "cross_entropy")
    assert result.returncode == 1, result.stdout
    # the two checks fail on the wrong closed form, and the generated files are stale: they state
    # the digest of the derivation file they were made from (nothing else of them changes)
    assert "3 failed, 2 passed" in result.stdout
    assert "cross_entropy.py::generated FAILED" in result.stdout or \
        re.search(r"generated.*stale|stale: .*cross_entropy", result.stdout)
    for dtype in ("float64", "float32"):  # only the closed form's two rows, of all the rows
        assert re.search(rf"cross_entropy: 2 of \d+ rows differ \({dtype}\)", result.stdout)
    rows = [line for line in result.stdout.splitlines() if line.startswith("logits ")]
    assert rows and all("approximate: False" in line and "reference: softmax - onehot" in line
                        for line in rows)
    assert "Traceback" not in result.stdout


def test_default_folders_and_a_bad_derivation(root, tmp_path):
    project = tmp_path / "plain"
    (project / "derivations").mkdir(parents=True)
    (project / "derivations" / "broken.py").write_text("program = 1\n")
    result = pytest_in(project, "--symderive")
    assert result.returncode == 1
    assert "bad derivation" in result.stdout and "'program' is a int" in result.stdout


def test_no_project_is_a_usage_error(tmp_path):
    result = pytest_in(tmp_path, "--symderive")
    assert result.returncode == 4 and "no symderive project" in result.stderr


def test_a_hand_edited_backward_fails_naming_the_row(project):
    """A wrong gradient written into the generated torch backward: the check items name its rows,
    gradcheck names the gradient; the double backward (derived separately) still passes."""
    path = project / "out" / "layernorm_torch.py"
    text = path.read_text()
    edited = re.sub(r"^( +)(dbeta = .*)$", r"\1\2\n\1dbeta = 2*dbeta", text, count=1,
                    flags=re.M)
    assert edited != text
    path.write_text(edited)
    result = pytest_in(project, "--symderive", "-k", "layernorm")
    assert result.returncode == 1, result.stdout
    assert "4 failed, 1 passed" in result.stdout  # generated, check x2, gradcheck; not gradgrad
    rows = [line for line in result.stdout.splitlines() if line.startswith("beta ")]
    assert rows and all("approximate: False" in line and "target: torch" in line
                        or "target: function" in line for line in rows)
    assert "layernorm: gradcheck fails: the gradient of y with respect to beta differs" \
        in result.stdout
    assert "Traceback" not in result.stdout


def test_a_hand_edited_gradients_fails_the_check_naming_the_row(project):
    """A wrong first-order gradient written into the generated ``gradients()`` (the path of the
    Function under create_graph=True, through the derived double backward): the check items name
    the row, target ``function (create_graph)``; the plain backward's rows still pass."""
    path = project / "out" / "layernorm_torch.py"
    text = path.read_text()
    start = text.index("\ndef gradients(")
    end = text.index("\ndef ", start + 1)
    body = re.sub(r"^( +)(grad_beta = .*)$", r"\1\2\n\1grad_beta = 2*grad_beta",
                  text[start:end], count=1, flags=re.M)
    assert body != text[start:end]
    path.write_text(text[:start] + body + text[end:])
    result = pytest_in(project, "--symderive", "-k", "layernorm and float")
    assert result.returncode == 1, result.stdout
    assert "2 failed" in result.stdout
    assert re.search(r"layernorm: 1 of \d+ rows differ \(float64\)", result.stdout)
    rows = [line for line in result.stdout.splitlines() if "approximate: False" in line]
    assert len(rows) == 2 and all(line.startswith("beta ") and
                                  "target: function (create_graph)" in line for line in rows)


def test_a_src_layout_is_checked_from_its_package_folder(root, tmp_path, capsys):
    """``[tool.symderive]`` at the root, derivations/ under src/pkg/: pytest --symderive started
    in src/pkg/ uses the configured root, so the generated files are current."""
    from .test_cli import _src_layout

    project, package = _src_layout(root, tmp_path)
    assert main(["regen", "--root", str(project)]) == 0
    capsys.readouterr()
    result = pytest_in(package, "--symderive", "-k", "generated or float64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
