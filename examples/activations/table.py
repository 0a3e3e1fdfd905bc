"""Prints the README's table of activations and losses: each file's derived gradient with respect
to ``x`` (what ``symderive derive --json`` reports) beside the textbook gradient the file states as
a plain SymPy expression (``TEXTBOOK``, with the upstream ``dy`` for a layer), both counted by the
same ``ops`` counter (``sympy.count_ops``, as ``derive`` counts). ``tests/test_activations.py``
checks that every ``TEXTBOOK`` equals the derived gradient at random points, so the column compares
like with like. Run: .venv/bin/python examples/activations/table.py"""
import runpy
from pathlib import Path

import sympy as sp

from symderive.algebra.simplify import compact_gradients
from symderive.program.ops import as_piecewise

FOLDER = Path(__file__).parent


def paths() -> list[Path]:
    return sorted(p for p in FOLDER.glob("*.py") if p.stem != "table")


def row(path: Path) -> dict:
    """The derived and textbook gradients of one file, with their ops."""
    namespace = runpy.run_path(str(path), run_name=f"derivation_{path.stem}")
    program = namespace["program"]
    (gradient,) = [g for g in compact_gradients(program) if g.name == "x"]
    textbook = as_piecewise(namespace["TEXTBOOK"])
    return {"name": path.stem, "program": program, "gradient": gradient.expr,
            "ops": gradient.summary(program)["ops"], "textbook": textbook,
            "textbook_ops": int(sp.count_ops(textbook)),
            "reference": ", ".join(label for _, label, _ in program.references)}


def main() -> None:
    print("| file | checked against | gradient (derived) | ops | textbook gradient "
          "| textbook ops |")
    print("|---|---|---|---|---|---|")
    for path in paths():
        r = row(path)
        cells = [f"`{r['name']}`", f"`{r['reference']}`", f"`{r['gradient']}`", str(r["ops"]),
                 f"`{r['textbook']}`", str(r["textbook_ops"])]
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")


if __name__ == "__main__":
    main()
