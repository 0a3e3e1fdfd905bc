"""The example notebook runs clean: every cell executes, the check inside it passes, and the
derivation displays as LaTeX."""
import nbformat
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
