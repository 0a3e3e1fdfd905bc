"""Prints the README's table of activations and losses: the derived gradient's ``ops`` (from
``symderive derive --json``) beside the ops of the textbook derivative each file states (TEXTBOOK,
counted with ``sympy.count_ops``). Run: .venv/bin/python examples/activations/table.py"""
import json
import runpy
import subprocess
import sys
from pathlib import Path

import sympy as sp

from symderive.ops import log_sigmoid, sigmoid, softplus

FOLDER = Path(__file__).parent
NAMES = {name: sp.Symbol(name) for name in ("X", "T", "Y", "DY", "S", "n", "d", "alpha", "scale",
                                            "slope", "c", "delta", "beta")}
NAMES |= {"sigmoid": sigmoid, "softplus": softplus, "log_sigmoid": log_sigmoid}


def main() -> None:
    print("| file | gradient (derived) | ops | textbook ops |")
    print("|---|---|---|---|")
    for path in sorted(FOLDER.glob("*.py")):
        if path.stem == "table":
            continue
        textbook = runpy.run_path(str(path))["TEXTBOOK"]
        out = subprocess.run([sys.executable, "-m", "symderive", "derive", str(path), "--json"],
                             capture_output=True, text=True, check=True).stdout
        (gradient, *_) = [g for g in json.loads(out)["gradients"] if g["wrt"] == "x"]
        ops = sp.count_ops(sp.sympify(textbook, locals=NAMES))
        print(f"| `{path.stem}` | `{gradient['expr']}` | {gradient['ops']} | {ops} |")


if __name__ == "__main__":
    main()
