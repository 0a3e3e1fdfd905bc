"""The examples run: the notebook executes clean (its check passes, the derivation displays as
LaTeX), and makemore's MLP, its WaveNet and the small GPT train with the generated backward as
autograd does."""
import json
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient


def test_batchnorm_notebook_runs(root):
    notebook = nbformat.read(root / "examples" / "batchnorm.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "examples")}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    latex = [o["data"]["text/latex"] for o in outputs if "text/latex" in o.get("data", {})]
    assert any(r"\boxed" in text and r"\text{fold}" in text for text in latex)
    assert any(r"\mu_{j}" in text for text in latex)  # the program's own display


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("dtype, bound", [("float32", 1e-4), ("float64", 1e-10)])
def test_makemore_trains_like_autograd(root, tmp_path, backend, dtype, bound):
    """A short run of exercise 4 with the generated backward only, an autograd copy trained
    side by side from the same initialisation on the same minibatches."""
    plot = tmp_path / "loss.png"
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "makemore.py"), "--steps", "300", "--backend",
         backend, "--dtype", dtype, "--check-autograd", "--json", "--plot", str(plot)],
        capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["backend"] == backend and report["steps"] == 300 and report["hidden"] == 200
    assert 0 <= report["max_rel_loss_diff_vs_autograd"] <= bound
    assert 2.0 < report["val_loss"] < 3.3  # it learned something in 300 steps
    assert len(report["samples"]) == 20 and all(isinstance(s, str) for s in report["samples"])
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("dtype, bound", [("float32", 1e-4), ("float64", 1e-10)])
def test_wavenet_trains_like_autograd(root, tmp_path, backend, dtype, bound):
    """A short run of makemore part 5's WaveNet (the lecture's 76,579 parameters) with the
    generated backward only, an autograd copy trained side by side."""
    plot = tmp_path / "loss.png"
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "wavenet.py"), "--steps", "300", "--backend",
         backend, "--dtype", dtype, "--check-autograd", "--json", "--plot", str(plot)],
        capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["backend"] == backend and report["steps"] == 300
    assert report["parameters"] == 76579
    assert 0 <= report["max_rel_loss_diff_vs_autograd"] <= bound
    assert 2.0 < report["val_loss"] < 3.3
    assert len(report["samples"]) == 20 and all(isinstance(s, str) for s in report["samples"])
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("dtype, bound", [("float32", 1e-3), ("float64", 1e-9)])
def test_gpt_trains_like_its_autograd_twin(root, dtype, bound):
    """A short run of the small GPT with the generated backward only, beside its autograd twin
    from the same initialisation on the same batches."""
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "gpt.py"), "--steps", "150", "--dtype", dtype,
         "--check-autograd", "--eval-windows", "2000", "--json"],
        capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["steps"] == 150 and report["eval_windows"] == 2000
    assert 0 <= report["max_rel_loss_diff_vs_autograd"] <= bound
    assert report["val_loss"] < 3.0  # below uniform guessing (log 27 = 3.3) after 150 steps
    assert report["seconds_per_step"] > 0 and report["autograd_seconds_per_step"] > 0
    assert len(report["samples"]) == 20
